SELECT DISTINCT k FROM 'data/tr_events.parquet'
