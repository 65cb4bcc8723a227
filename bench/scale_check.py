"""Compares engines' outputs too large for ../shared/bench/check.py (it loads every output whole:
at 100M rows `windows/running_total` took it past 23 GB). DuckDB compares them out of core:
for every output of a job, a FULL JOIN of the engine's rows with the reference's on the
output's key (NULL matches NULL), counting rows that have no partner or differ in any column
(doubles within 1e-9 relative, as check.py's tolerance), and the row counts.

    python bench/scale_check.py --root OUT --engines kiln,polars --ref duckdb --jobs windows

Prints one line per output and engine; exits 1 when any differ. An engine whose run failed
(no output) is skipped, not counted as a difference: the results table reports the failure.
"""

import argparse
import os
import sys

import duckdb

# The key that makes each output's rows unique (from ../shared/bench's pinned semantics).
KEYS = {
    "windows/top3_salaries": ["department", "rank"],
    "windows/salary_quartiles": ["department", "name"],
    "windows/running_total": ["customer_id", "date", "transaction_id"],
    "windows/stock_metrics": ["stock", "date"],
    "etl/customer_category": ["customer_id", "category"],
    "quality/latest_per_customer": ["customer_id"],
    "quality/null_counts": [],
}


def scan(root, engine, output):
    path = os.path.join(root, engine, output + ".parquet")
    pattern = os.path.join(path, "**", "*.parquet") if os.path.isdir(path) else path
    return f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--engines", required=True)
    ap.add_argument("--ref", default="duckdb")
    ap.add_argument("--jobs", required=True)
    ap.add_argument("--memory", default="4GB")
    a = ap.parse_args()
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute(f"SET memory_limit = '{a.memory}'")
    con.execute(f"SET temp_directory = '{os.path.join(a.root, '_check_tmp')}'")
    bad = 0
    for output, keys in KEYS.items():
        if output.split("/")[0] not in a.jobs.split(","):
            continue
        ref = scan(a.root, a.ref, output)
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {ref}").fetchall()]
        types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {ref})").fetchall())
        for engine in a.engines.split(","):
            if engine == a.ref:
                continue
            if not os.path.exists(os.path.join(a.root, engine, output + ".parquet")):
                # The engine's run failed (the table says how); nothing to compare.
                print(f"SKIP {output}: {engine} wrote no output")
                continue
            other = scan(a.root, engine, output)
            on = " AND ".join(f"r.{k} IS NOT DISTINCT FROM o.{k}" for k in keys) or "true"

            def differs(c):
                if types[c] in ("DOUBLE", "FLOAT"):
                    return f"NOT (r.{c} IS NOT DISTINCT FROM o.{c} OR abs(r.{c} - o.{c}) <= 1e-9 * greatest(abs(r.{c}), abs(o.{c}), 1))"
                return f"r.{c} IS DISTINCT FROM o.{c}"

            n_ref, n_other = (con.execute(f"SELECT count(*) FROM {s}").fetchone()[0] for s in (ref, other))
            diff = con.execute(
                f"SELECT count(*) FROM (SELECT *, 1 AS _r FROM {ref}) r FULL JOIN (SELECT *, 1 AS _o FROM {other}) o ON {on} "
                f"WHERE r._r IS NULL OR o._o IS NULL OR {' OR '.join(differs(c) for c in cols)}"
            ).fetchone()[0]
            ok = diff == 0 and n_ref == n_other
            bad += not ok
            print(f"{'OK  ' if ok else 'DIFF'} {output}: {a.ref} vs {engine} ({n_ref} vs {n_other} rows, {diff} unmatched or different)")
    print("ALL AGREE" if bad == 0 else f"{bad} OUTPUT(S) DIFFER")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
