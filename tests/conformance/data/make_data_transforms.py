#!/usr/bin/env python3
"""Shared inputs of the §4/§6/§7/§11 transform, sink and test cases (files named tr_*).

Deterministic: run `python3 tests/conformance/data/make_data_transforms.py` to rewrite them.
Small tables with nulls, ties and edge values; Parquet so that every type (and every null) is
unambiguous. Needs pyarrow.
"""
import datetime as dt
import os

import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))


def ts(s):
    return None if s is None else dt.datetime.fromisoformat(s)


def write(name, schema, rows):
    cols = {f.name: [r[i] for r in rows] for i, f in enumerate(schema)}
    table = pa.table({f.name: pa.array(cols[f.name], type=f.type) for f in schema}, schema=schema)
    pq.write_table(table, os.path.join(HERE, name), compression="snappy")


# Orders: ties (20.0 twice), null amount / qty / customer / status / ts / region, a negative
# and a zero amount.
ORDERS = pa.schema([
    ("order_id", pa.int64()),
    ("customer_id", pa.string()),
    ("amount", pa.float64()),
    ("qty", pa.int64()),
    ("status", pa.string()),
    ("ts", pa.timestamp("us")),
    ("region", pa.string()),
])
write("tr_orders.parquet", ORDERS, [
    (1, "c1", 10.0, 1, "paid", ts("2024-01-01 10:00:00"), "east"),
    (2, "c1", 20.0, 2, "paid", ts("2024-01-02 10:00:00"), "east"),
    (3, "c1", 20.0, 1, "refund", ts("2024-01-03 10:00:00"), "east"),
    (4, "c2", 5.5, 3, "paid", ts("2024-01-01 09:00:00"), "west"),
    (5, "c2", None, 1, "paid", ts("2024-01-04 09:00:00"), "west"),
    (6, "c2", 7.25, None, "pending", ts("2024-01-05 09:00:00"), "west"),
    (7, "c3", 100.0, 5, "paid", ts("2024-01-02 12:00:00"), None),
    (8, "c3", -3.0, 1, "refund", ts("2024-01-03 12:00:00"), "east"),
    (9, None, 42.0, 2, "paid", ts("2024-01-06 00:00:00"), "north"),
    (10, "c4", 0.0, 0, None, ts("2024-01-07 00:00:00"), "north"),
    (11, "c4", 15.0, 1, "paid", None, "north"),
    (12, "c5", 8.0, 2, "paid", ts("2024-01-08 08:00:00"), "west"),
])

# Customers: c1..c3 match orders, c4/c5 have no customer row, c6 has no orders, and a null key.
CUSTOMERS = pa.schema([("customer_id", pa.string()), ("name", pa.string()), ("tier", pa.string())])
write("tr_customers.parquet", CUSTOMERS, [
    ("c1", "Ann", "gold"),
    ("c2", "Bob", "silver"),
    ("c3", "Cid", "gold"),
    ("c6", "Dee", "bronze"),
    (None, "Nul", None),
])

# Accounts: the same people under other column names (for on = ["l.x = r.y"]).
ACCOUNTS = pa.schema([("id", pa.string()), ("label", pa.string())])
write("tr_accounts.parquet", ACCOUNTS, [
    ("c1", "A-1"),
    ("c2", "B-2"),
    ("c9", "Z-9"),
    (None, "N-0"),
])

# Events for dedupe: exact duplicates, per-key ties, a null ts.
EVENTS = pa.schema([("k", pa.string()), ("ts", pa.int64()), ("v", pa.string())])
write("tr_events.parquet", EVENTS, [
    ("a", 1, "x"),
    ("a", 1, "x"),
    ("a", 3, "y"),
    ("b", 2, "z"),
    ("b", 2, "z"),
    ("b", 5, "w"),
    ("c", None, "q"),
    ("c", 4, "r"),
    ("d", 7, "s"),
])

# Scores for windows: ties in score, a null score, partitions of 5, 3 and 1 rows; seq is unique
# within a partition.
SCORES = pa.schema([("grp", pa.string()), ("name", pa.string()), ("score", pa.int64()), ("seq", pa.int64())])
write("tr_scores.parquet", SCORES, [
    ("a", "p1", 10, 1),
    ("a", "p2", 20, 2),
    ("a", "p3", 20, 3),
    ("a", "p4", 30, 4),
    ("a", "p5", None, 5),
    ("b", "q1", 5, 1),
    ("b", "q2", 5, 2),
    ("b", "q3", 7, 3),
    ("c", "r1", 1, 1),
])

# Numbers for statistics: g=a five values (odd count), g=b four values (even count, median is the
# mean of the middle two), g=c one value (sample stddev is null), g=d a null and a value.
# tag is constant within each group (for first/last), flag for count_if/bool_and.
NUMS = pa.schema([("g", pa.string()), ("x", pa.float64()), ("tag", pa.string()), ("flag", pa.bool_())])
write("tr_nums.parquet", NUMS, [
    ("a", 1.0, "ta", True),
    ("a", 2.0, "ta", True),
    ("a", 3.0, "ta", False),
    ("a", 4.0, "ta", True),
    ("a", 100.0, "ta", True),
    ("b", 1.0, "tb", True),
    ("b", 2.0, "tb", True),
    ("b", 10.0, "tb", True),
    ("b", 20.0, "tb", True),
    ("c", 7.0, "tc", False),
    ("d", None, "td", None),
    ("d", 2.0, "td", False),
])

# A skewed fact table for salted joins: hot key h1 holds most rows, h2 is hot but has no match on
# the right, cold keys k1..k3, and a null key.
FACTS = [("h1", i) for i in range(1, 25)] + [("h2", 100 + i) for i in range(1, 7)] + [
    ("k1", 201), ("k2", 202), ("k2", 203), ("k3", 204), (None, 205)]
write("tr_facts.parquet", pa.schema([("key", pa.string()), ("fid", pa.int64())]), FACTS)
write("tr_dims.parquet", pa.schema([("key", pa.string()), ("dname", pa.string())]), [
    ("h1", "hot one"),
    ("k1", "cold one"),
    ("k2", "cold two"),
    ("k4", "no facts"),
    (None, "null key"),
])

# Two tables for union: the same columns in another order, and an overlapping row.
write("tr_union_a.parquet", pa.schema([("id", pa.int64()), ("name", pa.string())]), [
    (1, "one"), (2, "two"), (2, "two")])
write("tr_union_b.parquet", pa.schema([("name", pa.string()), ("id", pa.int64())]), [
    ("two", 2), ("three", 3)])

# §7 tests: the SPEC's own example table.
write("tr_transactions.parquet",
      pa.schema([("transaction_id", pa.string()), ("customer_id", pa.string()), ("amount", pa.float64())]), [
          ("t1", "c1", 5.0), ("t2", "c1", -1.0), ("t3", "c2", 3.0)])

# Pre-existing sink output that some cases copy into their working directory (mode = append,
# overwrite, error_if_exists, ignore; a tripped `fail` rule must leave it in place). Same schema
# as the sinks' input: select order_id, customer_id, amount from tr_orders.
OLD = pa.schema([("order_id", pa.int64()), ("customer_id", pa.string()), ("amount", pa.float64())])
CONF = os.path.dirname(HERE)
for case, sub in [
    ("s06_sinks/mode_append_keeps_existing", "out/t"),
    ("s06_sinks/mode_overwrite_replaces_existing", "out/t"),
    ("s06_sinks/mode_error_if_exists_fails_on_existing", "out/t"),
    ("s06_sinks/mode_ignore_keeps_existing", "out/t"),
    ("s11_pinned/expect_fail_exit3_no_sink_written", "out/all"),
    ("s11_pinned/expect_fail_exit3_no_sink_written", "out/valid"),
]:
    d = os.path.join(CONF, case, sub)
    os.makedirs(d, exist_ok=True)
    cols = [(901, "old1", 1.5), (902, "old2", 2.5)]
    table = pa.table({f.name: pa.array([r[i] for r in cols], type=f.type) for i, f in enumerate(OLD)}, schema=OLD)
    pq.write_table(table, os.path.join(d, "existing-0.parquet"), compression="snappy")
