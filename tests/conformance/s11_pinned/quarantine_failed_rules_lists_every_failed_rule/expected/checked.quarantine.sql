SELECT *, list_filter([CASE WHEN NOT (flag IS NOT NULL AND flag) THEN 'flag_set' END,
                                CASE WHEN NOT (x IS NOT NULL AND x > 1) THEN 'x_positive' END], lambda e: e IS NOT NULL) AS _failed_rules
  FROM 'data/tr_nums.parquet' WHERE NOT ((flag IS NOT NULL AND flag) AND (x IS NOT NULL AND x > 1))
