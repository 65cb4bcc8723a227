SELECT id, id * 100 AS code FROM 'data/tr_union_a.parquet' UNION ALL SELECT id * 100, id FROM 'data/tr_union_b.parquet'
