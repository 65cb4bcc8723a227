SELECT o.order_id, o.amount, o.qty, o.status, o.ts, o.region, coalesce(o.customer_id, c.customer_id) AS customer_id, c.name, c.tier
  FROM 'data/tr_orders.parquet' o FULL JOIN 'data/tr_customers.parquet' c ON o.customer_id = c.customer_id
