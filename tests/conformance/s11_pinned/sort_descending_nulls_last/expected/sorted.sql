SELECT * FROM 'data/tr_orders.parquet' ORDER BY region DESC NULLS LAST, order_id DESC
