SELECT * FROM 'data/tr_orders.parquet' ORDER BY customer_id ASC NULLS FIRST, amount DESC NULLS LAST, order_id ASC
