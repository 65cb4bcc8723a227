WITH e AS (SELECT * FROM read_parquet('data/st_clicks_parquet/*.parquet')),
starts AS (
  SELECT time_bucket(INTERVAL 5 MINUTE, ts) AS window_start, * FROM e
  UNION ALL
  SELECT time_bucket(INTERVAL 5 MINUTE, ts) - INTERVAL 5 MINUTE AS window_start, * FROM e
)
SELECT window_start, window_start + INTERVAL 10 MINUTE AS window_end, page,
       sum(duration_ms) AS total_ms, count(*) AS clicks
FROM starts
GROUP BY window_start, page
ORDER BY 1, 3
