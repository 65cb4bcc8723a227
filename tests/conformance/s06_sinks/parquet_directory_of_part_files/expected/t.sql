SELECT order_id, customer_id, amount, qty, status, ts FROM 'data/tr_orders.parquet'
