SELECT order_id, customer_id, amount, region FROM 'data/tr_orders.parquet' WHERE customer_id IS NOT NULL AND amount IS NOT NULL AND status IS NOT NULL AND region IS NOT NULL
