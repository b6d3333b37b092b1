#!/usr/bin/env python3
"""Writes crates/pertoken-reference/tests/data/ggufpy_dequant.txt: random blocks of each ggml
weight type and what gguf-py (PyPI `gguf`, an implementation independent of ours, the one
llama.cpp's own tools use) dequantizes them to. The reference's test reads it.

Run: python3 -m venv /tmp/gg && /tmp/gg/bin/pip install gguf numpy &&
     /tmp/gg/bin/python scripts/ggufpy-dequant-vectors.py
Each type's block has its f16 scale fields set to finite random values (random bytes there could
be NaN); every other byte is random. Lines: `TYPE <hex of the blocks>` then `TYPE <hex of the
little-endian f32 values>`.
"""
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

rng = np.random.default_rng(23)
BLOCKS = 3
# type: (bytes per block, byte offsets of f16 fields)
TYPES = {
    "Q8_0": (T.Q8_0, 34, [0]),
    "Q4_0": (T.Q4_0, 18, [0]),
    "Q4_1": (T.Q4_1, 20, [0, 2]),
    "Q5_0": (T.Q5_0, 22, [0]),
    "Q5_1": (T.Q5_1, 24, [0, 2]),
    "Q4_K": (T.Q4_K, 144, [0, 2]),
    "Q5_K": (T.Q5_K, 176, [0, 2]),
    "Q6_K": (T.Q6_K, 210, [208]),
}
lines = []
for name, (qtype, size, halves) in TYPES.items():
    raw = rng.integers(0, 256, size=(BLOCKS, size), dtype=np.uint8)
    for b in range(BLOCKS):
        for off in halves:
            raw[b, off : off + 2] = np.frombuffer(
                np.float16(rng.normal() * 0.01).tobytes(), dtype=np.uint8
            )
    values = dequantize(raw.reshape(-1), qtype).astype("<f4")
    lines.append(f"{name} {raw.tobytes().hex()}")
    lines.append(f"{name} {values.tobytes().hex()}")
out = pathlib.Path(__file__).resolve().parent.parent / "crates/pertoken-reference/tests/data/ggufpy_dequant.txt"
out.write_text("\n".join(lines) + "\n")
print(f"wrote {out}")
