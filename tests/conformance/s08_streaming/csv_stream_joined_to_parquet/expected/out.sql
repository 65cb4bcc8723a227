WITH e AS (
  SELECT c.*, p.section
  FROM read_csv('data/st_clicks_csv/*.csv', header = true, columns = {user_id: 'VARCHAR', page: 'VARCHAR', ts: 'TIMESTAMP', duration_ms: 'BIGINT'}) c
  JOIN read_parquet('data/st_pages.parquet') p USING (page)
),
w AS (SELECT time_bucket(INTERVAL 10 MINUTE, ts) AS window_start, * FROM e)
SELECT window_start, window_start + INTERVAL 10 MINUTE AS window_end,
       section, count(*) AS clicks, avg(duration_ms) AS avg_ms
FROM w
WHERE window_start + INTERVAL 10 MINUTE <= (SELECT max(ts) FROM e) - INTERVAL 1 MINUTE
GROUP BY window_start, section
ORDER BY 1, 3
