SELECT * EXCLUDE (ts, region, qty) FROM 'data/tr_orders.parquet'
