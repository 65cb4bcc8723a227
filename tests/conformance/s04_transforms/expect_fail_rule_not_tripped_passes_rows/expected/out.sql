SELECT * FROM 'data/tr_orders.parquet'
