SELECT g, stddev_samp(x) AS sd FROM 'data/tr_nums.parquet' GROUP BY g
