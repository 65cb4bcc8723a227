SELECT *, row_number() OVER (PARTITION BY grp ORDER BY seq) AS rn FROM 'data/tr_scores.parquet'
