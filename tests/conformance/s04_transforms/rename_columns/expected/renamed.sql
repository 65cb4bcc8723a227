SELECT order_id, customer_id AS cust, amount AS amt, qty, status, ts, region FROM 'data/tr_orders.parquet'
