SELECT *, amount * 2 AS doubled FROM 'data/tr_orders.parquet'
