SELECT region, count(DISTINCT status) AS statuses FROM 'data/tr_orders.parquet' GROUP BY region
