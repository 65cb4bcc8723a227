SELECT * FROM 'data/tr_orders.parquet' ORDER BY amount ASC NULLS LAST, order_id
