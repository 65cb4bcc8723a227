SELECT *, lag(score) OVER w AS prev, lead(score) OVER w AS next, lag(score, 2) OVER w AS prev2,
  lead(score, 1, 0) OVER w AS next_or_zero FROM 'data/tr_scores.parquet' WINDOW w AS (PARTITION BY grp ORDER BY seq)
