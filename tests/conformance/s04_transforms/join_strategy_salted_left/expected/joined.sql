SELECT f.key, f.fid, d.dname FROM 'data/tr_facts.parquet' f LEFT JOIN 'data/tr_dims.parquet' d ON f.key = d.key
