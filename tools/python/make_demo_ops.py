#!/usr/bin/python3
"""Generates data/demo/ops.h5: a small synthetic 'model' whose layers behave differently, so the
demo shows saturation, collapse and healthy use side by side. Deterministic (fixed seed).

    make_demo_ops.py data/demo/ops.h5
"""
import sys

import numpy as np

sys.path.insert(0, sys.path[0])
from ess_writer import OperatorFileWriter  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "data/demo/ops.h5"
rng = np.random.default_rng(2025)
L, N, C, H, d = 192, 16, 32, 4, 16

with OperatorFileWriter(out, command_line="tools/python/make_demo_ops.py " + out, dtype=np.float32) as w:
    # Mamba with slow decays (long memory): every state dimension stays in use -> saturated.
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(2e-2), (1, C, L)))
    A = -np.tile(np.arange(1, N + 1, dtype=float), (C, 1))
    w.add_mamba("layers.0.mixer", dt, A, rng.standard_normal((1, L, N)), rng.standard_normal((1, L, N)), layer_index=0)
    # Softmax attention with local (window 8) and global heads.
    q, k = rng.standard_normal((1, H, L, d)), rng.standard_normal((1, H, L, d))
    w.add_softmax_attention("layers.1.attn_local", q, k, window=8, layer_index=1)
    w.add_softmax_attention("layers.2.attn_global", rng.standard_normal((1, H, L, d)) * 0.3,
                            rng.standard_normal((1, H, L, d)) * 0.3, layer_index=2)
    # Mamba with fast decays (dt large): the state forgets within a few steps -> collapsed.
    dt = np.exp(rng.uniform(np.log(2.0), np.log(6.0), (1, C, L)))
    Bm = rng.standard_normal((1, L, N)) * 0.05
    dt[:, :4] = 0.0  # four dead channels: dt = 0 writes nothing into the state
    w.add_mamba("layers.3.mixer", dt, A, Bm, rng.standard_normal((1, L, N)), layer_index=3)
    # Gated linear attention with moderate gates.
    g = np.log(1 / (1 + np.exp(-rng.standard_normal((1, H, L, d)) - 3))) / 4
    w.add_gla("layers.4.gla", rng.standard_normal((1, H, L, d)) / 4, rng.standard_normal((1, H, L, d)) / 4, g,
              layer_index=4)
    # Short causal convolution (K = 4), as in Mamba's conv1d.
    w.add_conv("layers.5.conv", rng.standard_normal((C, 4)), seq_len=L, layer_index=5)
print(out)
