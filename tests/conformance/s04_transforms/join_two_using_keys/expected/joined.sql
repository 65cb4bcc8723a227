SELECT s.*, CASE WHEN s.seq <= 2 THEN upper(s.name) END AS label FROM 'data/tr_scores.parquet' s
