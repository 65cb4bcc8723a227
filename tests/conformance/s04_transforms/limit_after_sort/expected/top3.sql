SELECT * FROM 'data/tr_orders.parquet' ORDER BY amount DESC NULLS LAST, order_id LIMIT 3
