SELECT *, row_number() OVER w AS nth, lag(amount) OVER w AS prev_amount FROM 'data/tr_orders.parquet' WINDOW w AS (PARTITION BY customer_id ORDER BY order_id)
