SELECT id, CAST(a AS VARCHAR) || '/' || CAST(b AS VARCHAR) AS ab FROM read_csv('data/src_nums.csv', header=true, auto_detect=false, columns={'id':'BIGINT','a':'BIGINT','b':'BIGINT','x':'DOUBLE'})
