SELECT order_id, amount, region, status FROM 'data/tr_orders.parquet' WHERE region IS NOT NULL AND status IS NOT NULL
