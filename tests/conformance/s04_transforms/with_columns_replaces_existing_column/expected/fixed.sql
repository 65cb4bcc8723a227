SELECT * REPLACE (coalesce(amount, 0.0) * 10 AS amount, upper(status) AS status) FROM 'data/tr_orders.parquet'
