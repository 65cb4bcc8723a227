SELECT customer_id, sum(amount) AS total FROM 'data/tr_orders.parquet' GROUP BY customer_id HAVING sum(amount) > 20
