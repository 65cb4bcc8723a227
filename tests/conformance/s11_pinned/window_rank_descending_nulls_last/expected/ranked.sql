SELECT *, rank() OVER (PARTITION BY grp ORDER BY score DESC NULLS LAST) AS rk FROM 'data/tr_scores.parquet'
