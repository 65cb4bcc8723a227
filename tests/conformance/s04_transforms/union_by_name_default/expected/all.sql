SELECT id, name FROM 'data/tr_union_a.parquet' UNION ALL SELECT id, name FROM 'data/tr_union_b.parquet'
