SELECT grp, arg_max(name, seq) AS last_name, arg_min(name, seq) AS first_name FROM 'data/tr_scores.parquet' GROUP BY grp
