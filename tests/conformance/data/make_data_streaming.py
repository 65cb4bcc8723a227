#!/usr/bin/env python3
"""Input directories of the §8 streaming conformance cases (every name starts with `st_`).

Written by hand so that the expected windows can be checked by eye as well as by DuckDB:
click events over 20 minutes of 2026-01-01 (UTC), split over files as a producer drops them.
Deterministic. Run from anywhere: python3 tests/conformance/data/make_data_streaming.py
Needs: pyarrow.
"""
import datetime
import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))

# (user, page, minute:second, duration in ms)
CLICKS = [
    [("u1", "/home", "00:10", 120), ("u2", "/home", "01:05", 80), ("u1", "/cart", "02:30", 300), ("u3", "/home", "04:59", 45)],
    [("u2", "/cart", "05:00", 210), ("u1", "/home", "06:40", 95), ("u4", "/checkout", "07:15", 500), ("u2", "/home", "09:30", 60)],
    [("u3", "/cart", "11:11", 150), ("u1", "/home", "12:00", 70), ("u4", "/home", "14:45", 40), ("u5", "/checkout", "16:20", 610), ("u2", "/home", "19:59", 30)],
]


def ts(mmss):
    m, s = mmss.split(":")
    return datetime.datetime(2026, 1, 1, 0, int(m), int(s))


def fresh_dir(name):
    path = os.path.join(HERE, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def main():
    # JSON lines, one file per drop.
    d = fresh_dir("st_clicks_json")
    for i, rows in enumerate(CLICKS):
        with open(os.path.join(d, f"clicks-{i}.json"), "w") as f:
            for user, page, t, ms in rows:
                f.write(json.dumps({"user_id": user, "page": page, "ts": ts(t).isoformat(), "duration_ms": ms}) + "\n")
    # The same events as CSV files with a header, and as Parquet files.
    d = fresh_dir("st_clicks_csv")
    for i, rows in enumerate(CLICKS):
        with open(os.path.join(d, f"clicks-{i}.csv"), "w", newline="") as f:
            f.write("user_id,page,ts,duration_ms\n")
            for user, page, t, ms in rows:
                f.write(f"{user},{page},{ts(t).isoformat(sep=' ')},{ms}\n")
    d = fresh_dir("st_clicks_parquet")
    for i, rows in enumerate(CLICKS):
        table = pa.table({
            "user_id": [r[0] for r in rows],
            "page": [r[1] for r in rows],
            "ts": pa.array([ts(r[2]) for r in rows], pa.timestamp("us")),
            "duration_ms": pa.array([r[3] for r in rows], pa.int64()),
        })
        pq.write_table(table, os.path.join(d, f"clicks-{i}.parquet"))
    # A static dimension (a Parquet file) for stream-static joins.
    pq.write_table(pa.table({"page": ["/home", "/cart", "/checkout"], "section": ["browse", "buy", "buy"]}), os.path.join(HERE, "st_pages.parquet"))


if __name__ == "__main__":
    main()
