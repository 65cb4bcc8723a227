SELECT g, quantile_cont(x, 0.25) AS p25, quantile_cont(x, 0.9) AS p90 FROM 'data/tr_nums.parquet' GROUP BY g
