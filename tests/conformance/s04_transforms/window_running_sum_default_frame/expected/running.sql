SELECT *, sum(score) OVER (PARTITION BY grp ORDER BY score ASC NULLS FIRST) AS running FROM 'data/tr_scores.parquet'
