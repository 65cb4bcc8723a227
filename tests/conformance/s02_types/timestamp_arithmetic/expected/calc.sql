SELECT id, ts + INTERVAL '1 hour' AS later, ts >= TIMESTAMP '2000-01-01 00:00:00' AS modern, CAST(ts AS DATE) AS day,
  date_trunc('month', ts) AS month_start, date_part('hour', ts) AS hr
FROM read_csv('data/src_times.csv', header=true, auto_detect=false,
  columns={'id':'BIGINT','d':'DATE','ts':'TIMESTAMP','ts_ms':'VARCHAR','ts_ns':'VARCHAR','ts_tz':'VARCHAR'})
