SELECT *, a / b AS q FROM read_csv('data/src_nums.csv', header=true, auto_detect=false, columns={'id':'BIGINT','a':'BIGINT','b':'BIGINT','x':'DOUBLE'})
