SELECT *, CASE WHEN score < 60 THEN 'Small' ELSE 'Large' END AS size,
  CASE WHEN age < 30 THEN 'young' WHEN age < 50 THEN 'mid' END AS band FROM read_csv('data/src_people.csv', header=true, auto_detect=false, columns={'id':'BIGINT','name':'VARCHAR','age':'INTEGER','city':'VARCHAR','joined':'DATE','score':'DOUBLE','active':'BOOLEAN'})
