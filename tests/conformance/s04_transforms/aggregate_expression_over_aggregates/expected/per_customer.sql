SELECT customer_id, sum(qty) / count(qty) AS mean_qty, list_sort(list(order_id)) AS ids FROM 'data/tr_orders.parquet' GROUP BY customer_id
