SELECT * FROM 'data/tr_orders.parquet' ORDER BY amount ASC NULLS FIRST, order_id
