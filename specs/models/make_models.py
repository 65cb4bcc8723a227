#!/usr/bin/env python3
"""Writes the models the example specs use, with fixed seeds (numpy only).

    python3 specs/models/make_models.py

customer_score.safetensors: an MLP 5 -> 8 -> 1 (relu, sigmoid) for specs/inference.toml.
customer_linear.safetensors: `weight` [1, 5] and `bias` [1], for the #[kiln::model] tests.
Tensors follow Kiln's mlp layout: layers.{i}.weight [out, in], layers.{i}.bias [out].
The safetensors format is written by hand (8-byte header length, JSON header, raw
little-endian data) so that numpy is the only dependency.
"""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def save(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def mlp(layers, seed):
    """Weights of an MLP with the given widths (He-style scaling), as float32."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, (a, b) in enumerate(zip(layers, layers[1:])):
        out[f"layers.{i}.weight"] = (rng.standard_normal((b, a)) * np.sqrt(2.0 / a)).astype(np.float32)
        out[f"layers.{i}.bias"] = (rng.standard_normal(b) * 0.1).astype(np.float32)
    return out


if __name__ == "__main__":
    save(os.path.join(HERE, "customer_score.safetensors"), mlp([5, 8, 1], seed=7))
    print("wrote specs/models/customer_score.safetensors")
    # A plain 5 -> 1 affine layer (weight, bias) for the #[kiln::model] tests.
    linear = mlp([5, 1], seed=11)
    save(os.path.join(HERE, "customer_linear.safetensors"), {"weight": linear["layers.0.weight"], "bias": linear["layers.0.bias"]})
    print("wrote specs/models/customer_linear.safetensors")
