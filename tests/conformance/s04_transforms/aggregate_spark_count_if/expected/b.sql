SELECT g, count_if(flag) AS n_true, count_if(x > 2) AS n_big FROM 'data/tr_nums.parquet' GROUP BY g
