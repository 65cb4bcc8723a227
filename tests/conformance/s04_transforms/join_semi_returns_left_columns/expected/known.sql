SELECT * FROM 'data/tr_orders.parquet' o WHERE EXISTS (SELECT 1 FROM 'data/tr_customers.parquet' c WHERE c.customer_id = o.customer_id)
