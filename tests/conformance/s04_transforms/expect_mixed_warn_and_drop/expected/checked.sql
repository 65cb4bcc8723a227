SELECT * FROM 'data/tr_orders.parquet' WHERE customer_id IS NOT NULL
