SELECT order_id, customer_id, amount FROM 'data/tr_orders.parquet'
