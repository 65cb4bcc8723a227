SELECT order_id, coalesce(region, '__HIVE_DEFAULT_PARTITION__') AS region FROM 'data/tr_orders.parquet'
