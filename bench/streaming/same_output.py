"""Whether Kiln's and Spark's window counts are the same rows (DuckDB reads both).

usage: same_output.py KILN_DIR SPARK_DIR   (exit 1 with the differences when they differ)
"""

import sys

import duckdb

kiln, spark = sys.argv[1:3]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
q = "SELECT CAST(window_start AS TIMESTAMP) s, CAST(window_end AS TIMESTAMP) e, page, CAST(clicks AS BIGINT) n FROM read_parquet('{}/**/*.parquet')"
con.execute(f"CREATE TABLE k AS {q.format(kiln)}")
con.execute(f"CREATE TABLE sp AS {q.format(spark)}")
only_k = con.execute("SELECT * FROM k EXCEPT ALL SELECT * FROM sp ORDER BY ALL LIMIT 5").fetchall()
only_s = con.execute("SELECT * FROM sp EXCEPT ALL SELECT * FROM k ORDER BY ALL LIMIT 5").fetchall()
(rows,) = con.execute("SELECT count(*) FROM k").fetchone()
if only_k or only_s:
    print(f"DIFFERENT: only in kiln {only_k}; only in spark {only_s}")
    sys.exit(1)
print(f"same {rows} window rows")
