SELECT region, max(amount) AS best FROM 'data/tr_orders.parquet' WHERE amount > 0 GROUP BY region
