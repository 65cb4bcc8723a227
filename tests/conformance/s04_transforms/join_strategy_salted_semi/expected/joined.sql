SELECT * FROM 'data/tr_facts.parquet' f WHERE EXISTS (SELECT 1 FROM 'data/tr_dims.parquet' d WHERE d.key = f.key)
