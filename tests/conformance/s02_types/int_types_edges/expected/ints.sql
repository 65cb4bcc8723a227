SELECT * FROM read_csv('data/src_ints.csv', header=true, auto_detect=false,
  columns={'i8':'TINYINT','i16':'SMALLINT','i32':'INTEGER','i64':'BIGINT','u8':'UTINYINT','u16':'USMALLINT','u32':'UINTEGER','u64':'UBIGINT'})
