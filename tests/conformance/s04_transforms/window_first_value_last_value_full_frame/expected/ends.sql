SELECT *, first_value(name) OVER w AS first_name, last_value(name) OVER w AS last_name, count(*) OVER w AS n
  FROM 'data/tr_scores.parquet' WINDOW w AS (PARTITION BY grp ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
