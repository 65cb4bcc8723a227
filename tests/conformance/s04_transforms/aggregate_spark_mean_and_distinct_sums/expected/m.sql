SELECT customer_id, avg(amount) AS mean_amount, sum(DISTINCT amount) AS distinct_total, avg(DISTINCT amount) AS distinct_avg FROM 'data/tr_orders.parquet' GROUP BY customer_id
