"""Reads and writes Delta tables with the `deltalake` Python package (delta-rs'
Python binding, an independent implementation of the Delta protocol's reader and
writer from Kiln's use of deltalake-core): the oracle of tests/tests/delta.rs.

  oracle.py rows PATH [VERSION]      the table's rows (at VERSION), sorted, as JSON lines
  oracle.py info PATH                {"version": N, "partitions": [...], "columns": [...]}
  oracle.py write PATH MODE JSON [PARTITION,...]   writes JSON rows (a list of objects)
  oracle.py times PATH               each version's commit time (RFC 3339, UTC), and half a second later, as JSON lines
"""
import json
import os
import sys
from datetime import datetime, timezone

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake


def rows(path, version=None):
    t = DeltaTable(path, version=None if version is None else int(version))
    table = t.to_pyarrow_table()
    out = []
    for r in table.to_pylist():
        out.append({k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()})
    for line in sorted(json.dumps(r, sort_keys=True) for r in out):
        print(line)


def info(path):
    t = DeltaTable(path)
    print(json.dumps({
        "version": t.version(),
        "partitions": t.metadata().partition_columns,
        "columns": [f.name for f in t.schema().fields],
    }))


def write(path, mode, data, partitions=None):
    table = pa.Table.from_pylist(json.loads(data))
    # An overwrite may change the schema (what a producer's schema change looks like to a reader).
    schema_mode = "overwrite" if mode == "overwrite" else None
    write_deltalake(path, table, mode=mode, partition_by=partitions.split(",") if partitions else None, schema_mode=schema_mode)


def times(path):
    t = DeltaTable(path)
    for h in sorted(t.history(), key=lambda h: h["version"]):
        at = datetime.fromtimestamp(h["timestamp"] / 1000, tz=timezone.utc)
        # Half a second later: a time between this commit and the next (the tests write
        # 1.1 s apart), whichever of the commit's clocks (commitInfo, or the log file's
        # modification time, a few ms later) a reader resolves timestamps with.
        later = datetime.fromtimestamp(h["timestamp"] / 1000 + 0.5, tz=timezone.utc)
        print(json.dumps({"version": h["version"], "timestamp": at.isoformat(timespec="milliseconds"), "between": later.isoformat(timespec="milliseconds")}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"rows": rows, "info": info, "write": write, "times": times}[cmd](*args)
    # deltalake 1.6's runtime threads can abort the interpreter's normal exit
    # after a time-travel load ("terminate called without an active exception").
    sys.stdout.flush()
    os._exit(0)
