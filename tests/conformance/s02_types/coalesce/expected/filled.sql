SELECT *, coalesce(a, b, 0) AS c, coalesce(x, 0.0) AS cx FROM read_csv('data/src_nums.csv', header=true, auto_detect=false, columns={'id':'BIGINT','a':'BIGINT','b':'BIGINT','x':'DOUBLE'})
