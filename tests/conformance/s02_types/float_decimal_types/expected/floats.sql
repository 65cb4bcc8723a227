SELECT * FROM read_csv('data/src_floats.csv', header=true, auto_detect=false,
  columns={'id':'BIGINT','f32':'FLOAT','f64':'DOUBLE','dbl':'DOUBLE','dec':'DECIMAL(10,2)'})
