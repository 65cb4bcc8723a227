SELECT order_id, customer_id, amount FROM 'data/tr_orders.parquet' WHERE customer_id IS NOT NULL AND amount IS NOT NULL
