SELECT order_id, ['non_negative'] AS _failed_rules FROM 'data/tr_orders.parquet' WHERE NOT (amount IS NOT NULL AND amount >= 0)
