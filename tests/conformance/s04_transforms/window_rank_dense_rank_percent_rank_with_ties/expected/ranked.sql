SELECT *, rank() OVER w AS rk, dense_rank() OVER w AS drk, percent_rank() OVER w AS prk FROM 'data/tr_scores.parquet'
  WINDOW w AS (PARTITION BY grp ORDER BY score ASC NULLS FIRST)
