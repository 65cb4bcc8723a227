SELECT * FROM 'data/tr_orders.parquet' WHERE amount IS NOT NULL AND amount >= 0
