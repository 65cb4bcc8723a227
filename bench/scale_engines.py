"""The reference DuckDB and Polars jobs (../shared/bench) under a memory budget, unchanged otherwise.

    python bench/scale_engines.py duckdb --memory 1GB --job etl --data DIR --out DIR
    python bench/scale_engines.py polars --job etl --data DIR --out DIR

DuckDB: the reference connection plus `SET memory_limit` (and its temp_directory, which the
reference sets from DUCKDB_TMP, for spilling). Polars: every `LazyFrame.collect()` of the
reference jobs runs on the streaming engine (`engine="streaming"`), Polars' out-of-core mode;
Polars has no memory limit setting. The jobs' queries are the reference's own, so check.py
compares these outputs like any others.
"""

import os
import sys

engine = sys.argv.pop(1)
memory = None
if "--memory" in sys.argv:
    i = sys.argv.index("--memory")
    memory = sys.argv[i + 1]
    del sys.argv[i : i + 2]
shared = os.environ.get("SHARED_BENCH", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "bench"))
sys.path.insert(0, os.path.abspath(shared))

if engine == "duckdb":
    import duckdb_jobs

    reference_connect = duckdb_jobs.connect

    def connect():
        con = reference_connect()
        if memory:
            con.execute(f"SET memory_limit = '{memory}'")
        return con

    duckdb_jobs.connect = connect
    duckdb_jobs.main()
elif engine == "polars":
    import polars as pl

    reference_collect = pl.LazyFrame.collect

    def collect(self, *args, **kwargs):
        kwargs.setdefault("engine", "streaming")
        return reference_collect(self, *args, **kwargs)

    pl.LazyFrame.collect = collect
    import polars_jobs

    polars_jobs.main()
else:
    sys.exit(f"unknown engine {engine} (duckdb or polars)")
