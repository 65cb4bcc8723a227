SELECT customer_id, sum(amount * qty) AS gross FROM 'data/tr_orders.parquet' GROUP BY customer_id
