SELECT count(*) AS n, sum(amount) AS total FROM 'data/tr_orders.parquet' WHERE amount > 1000
