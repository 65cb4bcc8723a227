SELECT CAST(order_id AS VARCHAR) AS order_id, customer_id, CAST(trunc(amount) AS BIGINT) AS amount,
  CAST(qty AS DOUBLE) AS qty, status, CAST(ts AS DATE) AS ts, region FROM 'data/tr_orders.parquet'
