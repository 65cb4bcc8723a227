SELECT d.key, f.fid, d.dname FROM 'data/tr_facts.parquet' f RIGHT JOIN 'data/tr_dims.parquet' d ON f.key = d.key
