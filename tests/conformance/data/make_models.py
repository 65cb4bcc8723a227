#!/usr/bin/env python3
"""Models and inputs of the §5 model/inference cases (files named m_*), and their expected rows.

Deterministic: run `python3 tests/conformance/data/make_models.py` to rewrite them. Needs pyarrow
only: safetensors files are written by hand (8-byte little-endian header length, a JSON header
{name: {dtype, shape, data_offsets}}, then the raw little-endian float32 data).

Weight layout (SPEC is silent; a user's guess): PyTorch's nn.Linear, `weight` [out, in] and
`bias` [out]; an mlp is `layers.0.weight`, `layers.0.bias`, `layers.1.weight`, ... one Linear per
step of `layers` (Spark's `layers = [in, hidden..., out]`).

Weights and inputs are small dyadic numbers, so linear / mlp scores are exact in float32 and the
expected values below are exact. Sigmoid outputs are compared rounded to 4 digits (the cases
round them in a `select`); this script checks that float32 error cannot move them across a
rounding boundary. It also writes the hand-computed expected/*.jsonl of the s05_models cases.
"""
import json
import math
import os
import struct

import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(os.path.dirname(HERE), "s05_models")


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def write_safetensors(name, tensors):
    """tensors: list of (name, shape, flat float values) in file order."""
    header, blobs, offset = {}, [], 0
    for tname, shape, values in tensors:
        assert math.prod(shape) == len(values), tname
        blob = struct.pack("<%df" % len(values), *values)
        header[tname] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the header is padded to 8 bytes, as the reference writer does
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def write_parquet(name, table):
    pq.write_table(table, os.path.join(HERE, name), compression="snappy")


def write_expected(case, node, rows):
    d = os.path.join(CASES, case, "expected")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, node + ".jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r, sort_keys=True) + "\n")


# ---------------------------------------------------------------- models

# linear: y = 0.5 a + 2 b - c + 1
LIN_W, LIN_B = [0.5, 2.0, -1.0], 1.0
write_safetensors("m_linear.safetensors", [("weight", (1, 3), LIN_W), ("bias", (1,), [LIN_B])])

# logistic: p = sigmoid(a - b + 0.5 c + 0.25)
LOG_W, LOG_B = [1.0, -1.0, 0.5], 0.25
write_safetensors("m_logistic.safetensors", [("weight", (1, 3), LOG_W), ("bias", (1,), [LOG_B])])

# mlp, layers = [3, 4, 1]
MLP_W0 = [[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [-1.0, 0.0, 2.0], [0.0, -0.5, 0.0]]
MLP_B0 = [0.0, 0.5, -1.0, 0.25]
MLP_W1 = [[1.0, -2.0, 0.5, 1.0]]
MLP_B1 = [-0.5]
write_safetensors("m_mlp.safetensors", [
    ("layers.0.weight", (4, 3), [v for row in MLP_W0 for v in row]),
    ("layers.0.bias", (4,), MLP_B0),
    ("layers.1.weight", (1, 4), [v for row in MLP_W1 for v in row]),
    ("layers.1.bias", (1,), MLP_B1),
])


def dot(w, x, b):
    return sum(wi * xi for wi, xi in zip(w, x)) + b


def linear(x):
    return dot(LIN_W, x, LIN_B)


def relu(v):
    return max(v, 0.0)


def mlp(x):
    h = [relu(dot(w, x, b)) for w, b in zip(MLP_W0, MLP_B0)]
    return dot(MLP_W1[0], h, MLP_B1[0])


def sigmoid4(z):
    """sigmoid rounded to 4 digits, checked to be stable under float32 error."""
    p = 1.0 / (1.0 + math.exp(-z))
    scaled = p * 1e4
    assert abs(scaled - math.floor(scaled) - 0.5) > 0.01, (z, p)  # far from a rounding boundary
    return round(p, 4)


def exact(v):
    assert f32(v) == v, v  # every linear / mlp score is exact in float32
    return v


# ---------------------------------------------------------------- inputs

POINTS = [
    (1, 1.0, 2.0, 3.0),
    (2, 0.0, 0.0, 0.0),
    (3, -1.0, 4.0, 0.5),
    (4, 2.0, -3.0, 1.0),
    (5, 3.0, 1.0, -2.0),
    (6, 0.5, 0.25, 4.0),
    (7, -2.0, -1.0, -1.5),
]
write_parquet("m_points.parquet", pa.table({
    "id": pa.array([p[0] for p in POINTS], pa.int64()),
    "a": pa.array([p[1] for p in POINTS], pa.float32()),
    "b": pa.array([p[2] for p in POINTS], pa.float32()),
    "c": pa.array([p[3] for p in POINTS], pa.float32()),
}))
write_parquet("m_vectors.parquet", pa.table({
    "id": pa.array([p[0] for p in POINTS], pa.int64()),
    "vec": pa.array([list(p[1:]) for p in POINTS], pa.list_(pa.float32())),
}))

NULLS = [(1, 1.0, 2.0, 3.0), (2, None, 0.0, 0.0), (3, -1.0, 4.0, None), (4, 2.0, -3.0, 1.0), (5, None, None, None)]
write_parquet("m_nulls.parquet", pa.table({
    "id": pa.array([p[0] for p in NULLS], pa.int64()),
    "a": pa.array([p[1] for p in NULLS], pa.float32()),
    "b": pa.array([p[2] for p in NULLS], pa.float32()),
    "c": pa.array([p[3] for p in NULLS], pa.float32()),
}))

MIXED = [(1, 1.0, 2, 3.0, "x"), (2, 0.0, 0, 0.0, "y"), (3, -1.0, 4, 0.5, "z"), (4, 2.0, -3, 1.0, "x")]
write_parquet("m_mixed.parquet", pa.table({
    "id": pa.array([p[0] for p in MIXED], pa.int64()),
    "a": pa.array([p[1] for p in MIXED], pa.float64()),
    "b": pa.array([p[2] for p in MIXED], pa.int32()),
    "c": pa.array([p[3] for p in MIXED], pa.float32()),
    "label": pa.array([p[4] for p in MIXED], pa.string()),
}))

MANY = [(i, float(i % 7 - 3), (i % 5) * 0.5, float(i % 3 - 1)) for i in range(1, 101)]
write_parquet("m_many.parquet", pa.table({
    "id": pa.array([p[0] for p in MANY], pa.int64()),
    "a": pa.array([p[1] for p in MANY], pa.float32()),
    "b": pa.array([p[2] for p in MANY], pa.float32()),
    "c": pa.array([p[3] for p in MANY], pa.float32()),
}))

# ---------------------------------------------------------------- expected rows

def pt(p):
    return {"id": p[0], "a": p[1], "b": p[2], "c": p[3]}


write_expected("linear_named_features", "scored",
               [dict(pt(p), score=exact(linear(p[1:]))) for p in POINTS])
write_expected("logistic_sigmoid", "rounded",
               [{"id": p[0], "p": sigmoid4(dot(LOG_W, p[1:], LOG_B))} for p in POINTS])
write_expected("mlp_relu_linear_output", "scored",
               [dict(pt(p), y=exact(mlp(p[1:]))) for p in POINTS])
write_expected("mlp_relu_sigmoid_output", "rounded",
               [{"id": p[0], "p": sigmoid4(mlp(p[1:]))} for p in POINTS])
write_expected("list_column_features", "scored",
               [{"id": p[0], "vec": list(p[1:]), "score": exact(linear(p[1:]))} for p in POINTS])
write_expected("batch_size_partial_batches", "scored",
               [dict(pt(p), score=exact(linear(p[1:]))) for p in MANY])
write_expected("null_feature_gives_null_score", "scored",
               [dict(pt(p), score=None if None in p[1:] else exact(linear(p[1:]))) for p in NULLS])
write_expected("numeric_feature_types", "scored",
               [{"id": p[0], "a": p[1], "b": p[2], "c": p[3], "label": p[4], "score": exact(linear(p[1:4]))} for p in MIXED])
write_expected("one_model_two_predicts", "both",
               [dict(pt(p), s1=exact(linear(p[1:])), s2=exact(linear((p[2], p[3], p[1])))) for p in POINTS])
