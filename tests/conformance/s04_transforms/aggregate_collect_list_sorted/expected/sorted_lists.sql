SELECT customer_id, list_sort(list(order_id)) AS ids FROM 'data/tr_orders.parquet' GROUP BY customer_id
