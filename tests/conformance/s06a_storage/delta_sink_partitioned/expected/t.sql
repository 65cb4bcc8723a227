SELECT order_id, amount, region FROM 'data/tr_orders.parquet'
