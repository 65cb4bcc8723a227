SELECT g, var_samp(x) AS variance, var_samp(x) AS var_samp, var_pop(x) AS var_pop, stddev_samp(x) AS sd_samp,
  stddev_pop(x) AS sd_pop, stddev_samp(x) AS sd FROM 'data/tr_nums.parquet' GROUP BY g
