SELECT * REPLACE (coalesce(amount, 0.0) AS amount, upper(status) AS status) FROM 'data/tr_orders.parquet' UNION ALL SELECT * FROM 'data/tr_orders.parquet'
