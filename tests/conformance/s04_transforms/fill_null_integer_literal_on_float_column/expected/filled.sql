SELECT * REPLACE (coalesce(amount, 0.0) AS amount) FROM 'data/tr_orders.parquet'
