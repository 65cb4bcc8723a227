SELECT customer_id, status, count(*) AS n, sum(amount) AS total FROM 'data/tr_orders.parquet' GROUP BY customer_id, status
