SELECT *, ntile(2) OVER w AS t2, ntile(3) OVER w AS t3, ntile(4) OVER w AS t4 FROM 'data/tr_scores.parquet' WINDOW w AS (PARTITION BY grp ORDER BY seq)
