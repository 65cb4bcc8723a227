SELECT order_id, customer_id, amount FROM 'data/tr_orders.parquet' UNION ALL SELECT 901, 'old1', 1.5 UNION ALL SELECT 902, 'old2', 2.5
