SELECT k, ts, v FROM (SELECT *, row_number() OVER (PARTITION BY k ORDER BY ts DESC NULLS LAST) AS rn FROM 'data/tr_events.parquet') WHERE rn = 1
