"""Writes specs/NAME.jsonl from specs/NAME.sql: DuckDB over the local copies of the
objects tests/tests/object_store.rs puts into its bucket (run from anywhere)."""
import glob, json, os

import duckdb

HERE = os.path.dirname(os.path.abspath(__file__))


def plain(v):
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return float(v)


def main():
    os.chdir(os.path.join(HERE, "..", "conformance"))  # the queries read data/...
    for sql in sorted(glob.glob(os.path.join(HERE, "specs", "*.sql"))):
        cur = duckdb.connect().execute(open(sql).read())
        names = [d[0] for d in cur.description]
        rows = [{n: plain(v) for n, v in zip(names, r)} for r in cur.fetchall()]
        with open(sql[: -len(".sql")] + ".jsonl", "w") as f:
            for r in sorted(rows, key=lambda r: json.dumps(r, sort_keys=True)):
                f.write(json.dumps(r, sort_keys=True) + "\n")
        print(f"{os.path.basename(sql)}: {len(rows)} rows")


if __name__ == "__main__":
    main()
