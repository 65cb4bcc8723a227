#!/usr/bin/env python3
"""Differential test of expressions: Kiln against DuckDB.

Generates (seeded) expressions over a typed table with nulls and edge values, evaluates each in
DuckDB, and writes what tests/tests/differential.rs compares Kiln's results with:

  table.parquet   the input (id, g, i, j, x, s, t, d, b)
  cases.jsonl     one line per expression: {"kind": "row"|"agg", "kiln": text, "duckdb": text,
                  "note": why they differ (or ""), "rows": {id or group: value}}

Where Kiln deliberately follows Spark and DuckDB differs (SPEC §11), the DuckDB text is written
to compute Spark's answer and the case carries a note:
  - `concat` is NULL when any argument is NULL (DuckDB's concat skips NULLs; its `||` does not)
  - a division or modulo by zero is NULL (Spark without ANSI mode; DuckDB: NULL too; DataFusion errors)
  - CAST(double AS BIGINT) truncates toward zero (DuckDB rounds)
  - `median` is a double (Spark's percentile); DuckDB keeps a decimal argument's scale

Run: python3 tests/differential/make_cases.py   (needs `pip install duckdb pyarrow`)
"""
import datetime
import decimal
import json
import os
import random

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 20261130
N_ROW = 400
N_AGG = 60

ROWS = [
    # id, g, i, j, x, s, t, d, b
    (1, "a", 0, 2, 2.5, "abc", "x", "2024-02-29", True),
    (2, "a", 1, 0, -0.5, "", "y", "1970-01-01", False),
    (3, "b", -1, 3, 0.0, None, "z", None, None),
    (4, "b", 7, None, None, "Hello", None, "2023-12-31", True),
    (5, "c", -7, -2, 1e10, "a b", "", "2000-01-01", False),
    (6, "c", 2147483647, 1, -3.25, "ünï", "b", "1999-12-31", True),
    (7, "a", None, 4, 0.1, "x", None, "2024-01-01", None),
    (8, "b", 3, 3, 7.0, "ABC", "c", "2024-03-01", False),
    (9, None, 10, -3, None, "abc", "d", "2021-06-15", True),
    (10, "c", -2, 7, 2.0, "zz", "e", None, True),
    (11, "a", 5, 0, -1.5, None, "f", "2022-10-10", False),
    (12, "b", None, 2, 100.125, "  pad  ", "g", "2020-02-28", None),
]

NUM_COLS = ["i", "j", "x"]
INT_COLS = ["i", "j"]
STR_COLS = ["s", "t"]


def write_table():
    cols = list(zip(*ROWS))
    table = pa.table(
        {
            "id": pa.array(cols[0], pa.int64()),
            "g": pa.array(cols[1], pa.string()),
            "i": pa.array(cols[2], pa.int64()),
            "j": pa.array(cols[3], pa.int64()),
            "x": pa.array(cols[4], pa.float64()),
            "s": pa.array(cols[5], pa.string()),
            "t": pa.array(cols[6], pa.string()),
            "d": pa.array([datetime.date.fromisoformat(v) if v else None for v in cols[7]], pa.date32()),
            "b": pa.array(cols[8], pa.bool_()),
        }
    )
    pq.write_table(table, os.path.join(HERE, "table.parquet"))


class Gen:
    """Random typed expressions: each returns (kiln text, duckdb text, note)."""

    def __init__(self, rng):
        self.rng = rng

    def pick(self, xs):
        return self.rng.choice(xs)

    def num(self, depth):
        r = self.rng.random()
        if depth <= 0 or r < 0.3:
            if self.rng.random() < 0.7:
                c = self.pick(NUM_COLS)
                return c, c, ""
            v = self.pick(["0", "1", "-3", "2.5", "10"])
            return v, v, ""
        if r < 0.6:
            (a, da, na), (b, db, nb) = self.num(depth - 1), self.num(depth - 1)
            op = self.pick(["+", "-", "*"])
            return f"({a} {op} {b})", f"({da} {op} {db})", na or nb
        if r < 0.7:
            (a, da, na), (b, db, nb) = self.num(depth - 1), self.num(depth - 1)
            op = self.pick(["/", "%"])
            note = "Spark: x / 0 and x % 0 are NULL"
            # DuckDB: `/` is fractional division (Spark's too); by zero NULL.
            return f"({a} {op} {b})", f"({da} {op} NULLIF({db}, 0))", note
        if r < 0.8:
            (c, dc, nc), (a, da, na), (b, db, nb) = self.cond(depth - 1), self.num(depth - 1), self.num(depth - 1)
            return f"CASE WHEN {c} THEN {a} ELSE {b} END", f"CASE WHEN {dc} THEN {da} ELSE {db} END", nc or na or nb
        if r < 0.9:
            (a, da, na), (b, db, nb) = self.num(depth - 1), self.num(depth - 1)
            return f"coalesce({a}, {b})", f"coalesce({da}, {db})", na or nb
        f = self.pick(["abs", "length", "extract"])
        if f == "abs":
            a, da, na = self.num(depth - 1)
            return f"abs({a})", f"abs({da})", na
        if f == "length":
            s, ds, ns = self.string(depth - 1)
            return f"length({s})", f"length({ds})", ns
        return "extract(year FROM d)", "extract(year FROM d)", ""

    def string(self, depth):
        r = self.rng.random()
        if depth <= 0 or r < 0.35:
            if self.rng.random() < 0.8:
                c = self.pick(STR_COLS)
                return c, c, ""
            v = self.pick(["'k'", "''", "'Zz'"])
            return v, v, ""
        (a, da, na) = self.string(depth - 1)
        f = self.pick(["upper", "lower", "concat", "pipe", "substr", "trim", "replace", "cast_int"])
        if f in ("upper", "lower", "trim"):
            return f"{f}({a})", f"{f}({da})", na
        if f == "concat":
            (b, db, nb) = self.string(depth - 1)
            return f"concat({a}, {b})", f"({da} || {db})", "Spark: concat is NULL when an argument is NULL"
        if f == "pipe":
            (b, db, nb) = self.string(depth - 1)
            return f"({a} || {b})", f"({da} || {db})", na or nb
        if f == "substr":
            start, n = self.pick(["1", "2"]), self.pick(["1", "3"])
            return f"substr({a}, {start}, {n})", f"substr({da}, {start}, {n})", na
        if f == "replace":
            return f"replace({a}, 'a', 'X')", f"replace({da}, 'a', 'X')", na
        c = self.pick(INT_COLS)
        return f"CAST({c} AS VARCHAR)", f"CAST({c} AS VARCHAR)", ""

    def cond(self, depth):
        r = self.rng.random()
        if depth <= 0 or r < 0.4:
            k = self.rng.random()
            if k < 0.4:
                (a, da, na), (b, db, nb) = self.num(0), self.num(0)
                op = self.pick(["=", "<>", "<", "<=", ">", ">="])
                return f"{a} {op} {b}", f"{da} {op} {db}", na or nb
            if k < 0.55:
                c = self.pick(NUM_COLS + STR_COLS + ["d", "b"])
                neg = self.pick(["", "NOT "])
                return f"{c} IS {neg}NULL", f"{c} IS {neg}NULL", ""
            if k < 0.7:
                c = self.pick(STR_COLS)
                return f"{c} = 'abc'", f"{c} = 'abc'", ""
            if k < 0.8:
                c = self.pick(INT_COLS)
                return f"{c} IN (0, 3, 7)", f"{c} IN (0, 3, 7)", ""
            if k < 0.9:
                c = self.pick(NUM_COLS)
                return f"{c} BETWEEN -1 AND 5", f"{c} BETWEEN -1 AND 5", ""
            return "d < DATE '2022-01-01'", "d < DATE '2022-01-01'", ""
        (a, da, na), (b, db, nb) = self.cond(depth - 1), self.cond(depth - 1)
        k = self.rng.random()
        if k < 0.4:
            return f"({a} AND {b})", f"({da} AND {db})", na or nb
        if k < 0.8:
            return f"({a} OR {b})", f"({da} OR {db})", na or nb
        return f"NOT ({a})", f"NOT ({da})", na

    def other(self):
        k = self.rng.random()
        if k < 0.3:
            n = self.pick(["1", "30", "-1"])
            return f"d + INTERVAL '{n} day'", f"CAST(d + INTERVAL '{n} day' AS DATE)", "DuckDB: date + interval is a timestamp"
        if k < 0.6:
            c = self.pick(["x"])
            return f"CAST({c} AS BIGINT)", f"CAST(trunc({c}) AS BIGINT)", "Spark: CAST(double AS BIGINT) truncates"
        if k < 0.8:
            c = self.pick(INT_COLS)
            return f"CAST({c} AS DOUBLE)", f"CAST({c} AS DOUBLE)", ""
        return "NOT b", "NOT b", ""

    def row_expr(self):
        k = self.rng.random()
        if k < 0.4:
            return self.num(3)
        if k < 0.65:
            return self.string(2)
        if k < 0.9:
            return self.cond(2)
        return self.other()

    def agg_expr(self):
        a, da, na = self.num(1)
        f = self.pick(["sum", "avg", "min", "max", "count", "count_distinct", "stddev", "median", "count_star", "collect"])
        if f == "count_distinct":
            return f"count_distinct({a})", f"count(DISTINCT {da})", na
        if f == "stddev":
            return f"stddev({a})", f"stddev_samp({da})", na
        if f == "count_star":
            return "count(*)", "count(*)", ""
        if f == "median":
            return f"median({a})", f"median(CAST({da} AS DOUBLE))", "Spark: median is a double (DuckDB keeps a decimal's scale)"
        if f == "collect":
            s = self.pick(STR_COLS)
            return f"array_sort(collect_set({s}))", f"list_sort(list_distinct(list({s}) FILTER (WHERE {s} IS NOT NULL)))", "collect_set skips NULLs"
        return f"{f}({a})", f"{f}({da})", na


# Spark's scalar function names (rewritten by kiln check into DataFusion expressions), each with
# the DuckDB expression that gives Spark's result.
SPARK_FUNCTIONS = [
    ("year(d)", "year(d)", ""),
    ("month(d)", "month(d)", ""),
    ("day(d)", "day(d)", ""),
    ("dayofmonth(d)", "dayofmonth(d)", ""),
    ("dayofweek(d)", "dayofweek(d) + 1", "Spark: 1 = Sunday; DuckDB: 0 = Sunday"),
    ("dayofyear(d)", "dayofyear(d)", ""),
    ("weekofyear(d)", "weekofyear(d)", ""),
    ("quarter(d)", "quarter(d)", ""),
    ("datediff(d, DATE '2020-01-01')", "datediff('day', DATE '2020-01-01', d)", "Spark: datediff(end, start)"),
    ("datediff(DATE '2024-03-01', d)", "datediff('day', d, DATE '2024-03-01')", "Spark: datediff(end, start)"),
    ("date_add(d, j)", "CAST(d + j::INTEGER AS DATE)", ""),
    ("date_sub(d, 3)", "CAST(d - 3 AS DATE)", ""),
    ("isnull(s)", "s IS NULL", ""),
    ("isnotnull(x)", "x IS NOT NULL", ""),
    ("lcase(s)", "lcase(s)", ""),
    ("ucase(t)", "ucase(t)", ""),
    # Spark: r = a % b; (r + b) % b when r < 0, else r; NULL by zero.
    ("pmod(i, j)", "CASE WHEN i % NULLIF(j, 0) < 0 THEN (i % NULLIF(j, 0) + j) % NULLIF(j, 0) ELSE i % NULLIF(j, 0) END", "Spark's pmod, NULL by zero"),
    ("pmod(-7, 3)", "2", "Spark: pmod(-7, 3) = 2"),
    ("pmod(7, -3)", "1", "Spark: pmod(7, -3) = 1"),
]


def plain(v):
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


def main():
    write_table()
    rng = random.Random(SEED)
    gen = Gen(rng)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"CREATE TABLE t AS SELECT * FROM read_parquet('{os.path.join(HERE, 'table.parquet')}')")
    out = []
    seen = set()
    for k, dk, note in SPARK_FUNCTIONS:
        seen.add(k)
        rows = con.execute(f"SELECT id, {dk} FROM t ORDER BY id").fetchall()
        out.append({"kind": "row", "kiln": k, "duckdb": dk, "note": note, "rows": {str(r[0]): plain(r[1]) for r in rows}})
    while len(out) < N_ROW + len(SPARK_FUNCTIONS):
        k, dk, note = gen.row_expr()
        if k in seen:
            continue
        seen.add(k)
        rows = con.execute(f"SELECT id, {dk} FROM t ORDER BY id").fetchall()
        out.append({"kind": "row", "kiln": k, "duckdb": dk, "note": note, "rows": {str(r[0]): plain(r[1]) for r in rows}})
    while len(out) < N_ROW + len(SPARK_FUNCTIONS) + N_AGG:
        k, dk, note = gen.agg_expr()
        if k in seen:
            continue
        seen.add(k)
        rows = con.execute(f"SELECT coalesce(g, '<null>'), {dk} FROM t GROUP BY g").fetchall()
        out.append({"kind": "agg", "kiln": k, "duckdb": dk, "note": note, "rows": {r[0]: plain(r[1]) for r in rows}})
    with open(os.path.join(HERE, "cases.jsonl"), "w") as f:
        for c in out:
            f.write(json.dumps(c, sort_keys=True) + "\n")
    print(f"{len(out)} cases")


if __name__ == "__main__":
    main()
