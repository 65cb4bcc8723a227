SELECT order_id, customer_id AS cust, amount * 2 AS doubled, upper(status) AS status_uc FROM 'data/tr_orders.parquet'
