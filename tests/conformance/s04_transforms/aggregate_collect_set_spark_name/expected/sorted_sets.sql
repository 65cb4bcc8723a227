SELECT customer_id, list_sort(coalesce(list(DISTINCT status) FILTER (WHERE status IS NOT NULL), [])) AS statuses FROM 'data/tr_orders.parquet' GROUP BY customer_id
