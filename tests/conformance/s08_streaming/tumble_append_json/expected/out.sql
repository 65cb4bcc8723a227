WITH e AS (
  SELECT * FROM read_json('data/st_clicks_json/*.json', columns = {user_id: 'VARCHAR', page: 'VARCHAR', ts: 'TIMESTAMP', duration_ms: 'BIGINT'})
),
w AS (SELECT time_bucket(INTERVAL 5 MINUTE, ts) AS window_start, * FROM e)
SELECT window_start, window_start + INTERVAL 5 MINUTE AS window_end,
       page, count(*) AS clicks, count(DISTINCT user_id) AS users
FROM w
WHERE window_start + INTERVAL 5 MINUTE <= (SELECT max(ts) FROM e) - INTERVAL 2 MINUTE
GROUP BY window_start, page
ORDER BY 1, 3
