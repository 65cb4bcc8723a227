SELECT order_id, customer_id, coalesce(amount, 0.0) AS amount, coalesce(qty, 0) AS qty,
  coalesce(status, 'unknown') AS status, ts, coalesce(region, 'none') AS region FROM 'data/tr_orders.parquet'
