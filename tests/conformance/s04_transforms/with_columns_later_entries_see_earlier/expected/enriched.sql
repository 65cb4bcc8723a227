SELECT *, amount * qty AS gross, amount * qty + 1 AS gross_plus_one,
  CASE WHEN amount * qty + 1 > 20 THEN 'big' ELSE 'small' END AS size FROM 'data/tr_orders.parquet'
