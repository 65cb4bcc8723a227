SELECT region, count(DISTINCT customer_id) AS customers FROM 'data/tr_orders.parquet' GROUP BY region
