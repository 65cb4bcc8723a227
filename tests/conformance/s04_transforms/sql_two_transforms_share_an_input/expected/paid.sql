SELECT order_id, amount FROM 'data/tr_orders.parquet' WHERE status = 'paid'
