#!/usr/bin/env python3
"""The Delta table of the §3/§6a conformance cases: `delta_orders/`, written by the `deltalake`
Python package (not by Kiln), three versions:

  version 0  overwrite  ids 1, 2, 3
  version 1  append     ids 4, 5
  version 2  overwrite  id 9 only

Run from anywhere: PYTHONPATH=~/.cache/kiln/tools/pydelta python3 tests/conformance/data/make_data_delta.py
Needs: deltalake (1.6), pyarrow. Commit times differ per run; the cases read by version.
"""
import os
import shutil

import pyarrow as pa
from deltalake import write_deltalake

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "delta_orders")

shutil.rmtree(PATH, ignore_errors=True)
schema = pa.schema([("id", pa.int64()), ("region", pa.string()), ("amount", pa.float64())])


def batch(rows):
    return pa.Table.from_pylist([dict(zip(["id", "region", "amount"], r)) for r in rows], schema=schema)


write_deltalake(PATH, batch([(1, "east", 10.0), (2, "west", 20.5), (3, "east", 30.0)]), mode="overwrite", partition_by=["region"])
write_deltalake(PATH, batch([(4, "north", 40.0), (5, "west", 50.25)]), mode="append")
write_deltalake(PATH, batch([(9, "south", 90.0)]), mode="overwrite")
