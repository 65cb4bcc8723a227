SELECT id, amount, region
FROM read_parquet('data/src_hive_parquet/**/*.parquet', hive_partitioning=1)
ORDER BY id
