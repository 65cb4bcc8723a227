SELECT g, bool_and(flag) AS all_true, bool_or(flag) AS any_true FROM 'data/tr_nums.parquet' GROUP BY g
