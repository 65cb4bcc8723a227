SELECT c.*, a.* FROM 'data/tr_customers.parquet' c CROSS JOIN 'data/tr_accounts.parquet' a
