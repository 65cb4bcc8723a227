SELECT DISTINCT k, ts, v FROM 'data/tr_events.parquet'
