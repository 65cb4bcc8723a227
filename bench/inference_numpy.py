#!/usr/bin/env python3
"""numpy's batch inference on the same features and weights as predict_throughput.

    inference_numpy.py FEATURES.parquet MODEL.safetensors BATCH_SIZES [ROWS_FOR_SMALL_BATCHES]

The MLP (relu hidden layers, sigmoid output) in float32, as a batch-inference
pandas UDF would run it: per batch, x @ W.T + b and the activations. Features are
loaded into one float32 matrix first (not timed). Prints the same columns as
predict_throughput.
"""
import json
import struct
import sys
import time

import numpy as np
import pyarrow.parquet as pq


def load(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype="<f4").reshape(v["shape"])
            for k, v in header.items() if k != "__metadata__"}


def main():
    table = pq.read_table(sys.argv[1])
    x = np.column_stack([table.column(i).to_numpy() for i in range(table.num_columns)]).astype(np.float32)
    w = load(sys.argv[2])
    n_layers = len(w) // 2
    layers = [(np.ascontiguousarray(w[f"layers.{i}.weight"].T), w[f"layers.{i}.bias"]) for i in range(n_layers)]
    small = int(sys.argv[4]) if len(sys.argv) > 4 else len(x)
    for size in [int(s) for s in sys.argv[3].split(",")]:
        rows = min(small, len(x)) if size < 1024 else len(x)
        start = time.perf_counter()
        total = 0.0
        for s in range(0, rows, size):
            h = x[s:s + size]
            for i, (wt, b) in enumerate(layers):
                h = h @ wt + b
                h = np.maximum(h, 0, out=h) if i + 1 < n_layers else 1 / (1 + np.exp(-h))
            total += float(h.sum())
        secs = time.perf_counter() - start
        print(f"{size}\t{rows}\t{secs:.4f}\t{rows / secs:.0f}\t(sum of scores {total:.3f})")


if __name__ == "__main__":
    main()
