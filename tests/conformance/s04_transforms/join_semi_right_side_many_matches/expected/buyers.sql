SELECT * FROM 'data/tr_customers.parquet' c WHERE EXISTS (SELECT 1 FROM 'data/tr_orders.parquet' o WHERE o.customer_id = c.customer_id)
