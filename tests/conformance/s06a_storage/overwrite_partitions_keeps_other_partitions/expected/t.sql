SELECT order_id + 100 AS order_id, customer_id, amount, region FROM 'data/tr_orders.parquet' WHERE region = 'east'
UNION ALL
SELECT order_id, customer_id, amount, region FROM 'data/tr_orders.parquet' WHERE region IN ('west', 'north')
