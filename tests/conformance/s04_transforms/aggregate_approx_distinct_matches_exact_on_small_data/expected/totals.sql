SELECT count(DISTINCT customer_id) AS approx, count(DISTINCT customer_id) AS exact FROM 'data/tr_orders.parquet'
