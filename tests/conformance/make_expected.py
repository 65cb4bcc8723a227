#!/usr/bin/env python3
"""Expected rows of the conformance cases, computed by DuckDB independently of Kiln.

For every case directory tests/conformance/<section>/<case>/ holding expected/NAME.sql, runs that
query in DuckDB with tests/conformance/ as the working directory (so `data/people.csv` is the
shared data, as in the specs) and writes expected/NAME.jsonl: one JSON object per row, dates and
timestamps as ISO strings, decimals as strings, lists as arrays. Hand-computed expectations are
written as .jsonl directly, with no .sql beside them.

Run: python3 tests/conformance/make_expected.py   (needs `pip install duckdb`)
"""
import datetime
import decimal
import glob
import json
import math
import os

import duckdb

HERE = os.path.dirname(os.path.abspath(__file__))


def plain(v):
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return v


def main():
    os.chdir(HERE)
    for sql_path in sorted(glob.glob("*/*/expected/*.sql")):
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        cur = con.execute(open(sql_path).read())
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
        out = sql_path[: -len(".sql")] + ".jsonl"
        with open(out, "w") as f:
            for r in rows:
                f.write(json.dumps({n: plain(v) for n, v in zip(names, r)}, sort_keys=True) + "\n")
        print(f"{out}: {len(rows)} rows")


if __name__ == "__main__":
    main()
