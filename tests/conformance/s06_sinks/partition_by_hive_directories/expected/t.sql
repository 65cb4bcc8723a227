SELECT order_id, customer_id, amount, region FROM 'data/tr_orders.parquet' WHERE region IS NOT NULL
