SELECT id, CAST(age AS VARCHAR) AS age_s, CAST(trunc(score) AS INTEGER) AS score_i, 13 AS lit,
  CAST(joined AS VARCHAR) AS joined_s, CAST(id AS DOUBLE) AS id_d, DATE '2024-05-06' AS d FROM read_csv('data/src_people.csv', header=true, auto_detect=false, columns={'id':'BIGINT','name':'VARCHAR','age':'INTEGER','city':'VARCHAR','joined':'DATE','score':'DOUBLE','active':'BOOLEAN'})
