SELECT count(*) AS n, sum(amount) AS total, count(DISTINCT customer_id) AS customers, max(ts) AS latest FROM 'data/tr_orders.parquet'
