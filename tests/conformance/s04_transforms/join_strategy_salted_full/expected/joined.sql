SELECT coalesce(f.key, d.key) AS key, f.fid, d.dname FROM 'data/tr_facts.parquet' f FULL JOIN 'data/tr_dims.parquet' d ON f.key = d.key
