SELECT *, CASE WHEN customer_id IS NULL THEN ['has_customer'] ELSE ['non_negative'] END AS _failed_rules
        FROM 'data/tr_orders.parquet' WHERE NOT (customer_id IS NOT NULL AND amount IS NOT NULL AND amount >= 0)
