SELECT g, min(tag) AS first_tag, max(tag) AS last_tag FROM 'data/tr_nums.parquet' GROUP BY g
