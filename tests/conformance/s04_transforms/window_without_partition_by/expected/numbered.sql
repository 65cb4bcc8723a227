SELECT *, row_number() OVER (ORDER BY grp, seq) AS rn FROM 'data/tr_scores.parquet'
