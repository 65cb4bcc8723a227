SELECT id, name, small, amount, flag, day, ts, price, tags, small + 1 AS small1 FROM 'data/src_types.parquet'
