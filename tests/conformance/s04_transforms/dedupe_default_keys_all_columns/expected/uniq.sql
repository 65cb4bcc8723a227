SELECT DISTINCT * FROM 'data/tr_events.parquet'
