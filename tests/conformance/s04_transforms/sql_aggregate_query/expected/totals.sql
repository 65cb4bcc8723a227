SELECT customer_id, sum(amount) AS total, count(*) AS n FROM 'data/tr_orders.parquet' GROUP BY customer_id
