SELECT order_id, 'say "hi", ok' AS note FROM 'data/tr_orders.parquet'
