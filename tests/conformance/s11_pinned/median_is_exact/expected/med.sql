SELECT g, median(x) AS med FROM 'data/tr_nums.parquet' GROUP BY g
