SELECT * FROM 'data/tr_orders.parquet' WHERE amount > 0 AND customer_id IS NOT NULL
