#!/usr/bin/env python3
"""Features and weights for bench/inference.sh: ROWS x 16 float32 features (seed 1)
and an MLP 16 -> 32 -> 1 (seed 2, specs/models/make_models.py's layout).

    inference_data.py ROWS OUT_DIR
"""
import importlib.util
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("make_models", os.path.join(HERE, "..", "specs", "models", "make_models.py"))
make_models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_models)

rows, out = int(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
x = np.random.default_rng(1).standard_normal((rows, 16)).astype(np.float32)
pq.write_table(pa.table({f"f{i}": x[:, i] for i in range(16)}), os.path.join(out, "features.parquet"))
make_models.save(os.path.join(out, "mlp_16_32_1.safetensors"), make_models.mlp([16, 32, 1], seed=2))
print(f"{out}: features.parquet ({rows} x 16), mlp_16_32_1.safetensors")
