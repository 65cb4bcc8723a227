SELECT customer_id, count(*) AS n, count(amount) AS n_amount, sum(amount) AS total, sum(qty) AS total_qty,
  avg(amount) AS mean, min(amount) AS lo, max(amount) AS hi, min(ts) AS first_ts FROM 'data/tr_orders.parquet' GROUP BY customer_id
