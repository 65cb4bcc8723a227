SELECT customer_id, count(*) AS n, sum(amount) AS total FROM 'data/tr_orders.parquet' GROUP BY customer_id HAVING count(*) >= 3 AND sum(amount) > 20
