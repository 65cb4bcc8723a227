SELECT o.order_id, c.name, o.amount FROM 'data/tr_orders.parquet' o JOIN 'data/tr_customers.parquet' c ON o.customer_id = c.customer_id WHERE o.amount > 0
