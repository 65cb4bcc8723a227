SELECT o.*, a.* FROM 'data/tr_orders.parquet' o JOIN 'data/tr_accounts.parquet' a ON o.customer_id = a.id
