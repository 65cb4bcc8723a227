SELECT order_id, amount FROM 'data/tr_orders.parquet' ORDER BY amount ASC NULLS FIRST, order_id
