SELECT *, sum(score) OVER w AS sum3, avg(score) OVER w AS avg3, count(score) OVER w AS cnt3, max(score) OVER w AS max3
  FROM 'data/tr_scores.parquet' WINDOW w AS (PARTITION BY grp ORDER BY seq ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)
