SELECT id, amount, region,
       CASE WHEN amount < 2.0 THEN 'small' ELSE 'large' END AS size_band
FROM read_parquet('data/src_hive_parquet/**/*.parquet', hive_partitioning=1)
WHERE region = 'eu' AND amount > 1.0
ORDER BY id
