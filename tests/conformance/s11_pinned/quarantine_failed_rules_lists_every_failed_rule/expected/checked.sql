SELECT * FROM 'data/tr_nums.parquet' WHERE (flag IS NOT NULL AND flag) AND (x IS NOT NULL AND x > 1)
