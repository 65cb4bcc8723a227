SELECT * FROM 'data/tr_orders.parquet' WHERE customer_id IS NOT NULL AND amount IS NOT NULL AND amount >= 0
