SELECT c.*, a.* FROM 'data/tr_customers.parquet' c FULL JOIN 'data/tr_accounts.parquet' a ON c.customer_id = a.id
