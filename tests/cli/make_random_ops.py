#!/usr/bin/python3
"""Writes a small random operator file with every family (for the CLI tests)."""
import sys

import numpy as np

sys.path.insert(0, sys.path[0] + "/../../tools/python")
from ess_writer import OperatorFileWriter  # noqa: E402

out, seed = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
rng = np.random.default_rng(seed)
B, H, L, d, N = 2, 2, 14, 3, 4
r = lambda *s: rng.standard_normal(s)
u = lambda lo, hi, *s: rng.uniform(lo, hi, s)
with OperatorFileWriter(out, seq_len=L) as w:
    w.add_dense("dense", np.tril(r(B, H, L, L)))
    w.add_softmax_attention("attn", r(B, H, L, d), r(B, H, L, d))
    w.add_softmax_attention("attn_window", r(B, H, L, d), r(B, H, L, d), window=4, scale=0.8)
    mask = np.tril(np.ones((L, L), dtype=np.uint8)) * ((np.arange(L)[:, None] - np.arange(L)[None, :]) % 3 == 0)
    mask[:, 0] = 1
    w.add_softmax_attention("attn_mask", r(B, H, L, d), r(B, H, L, d), mask=np.tril(mask))
    w.add_linear_attention("linear", u(0.1, 1, B, H, L, d), u(0.1, 1, B, H, L, d), normalize=True)
    w.add_retention("retention", r(B, H, L, d), r(B, H, L, d), u(0.5, 0.95, H, d))
    w.add_gla("gla", r(B, H, L, d), r(B, H, L, d), u(-0.6, 0, B, H, L, d))
    w.add_delta_net("delta", r(B, H, L, d), r(B, H, L, d) * 0.5, u(0, 1, B, H, L), log_gate=u(-0.3, 0, B, H, L))
    w.add_mamba("mamba", u(0.01, 0.6, B, 3, L), u(-2, -0.1, 3, N), r(B, L, N), r(B, L, N))
    w.add_mamba2("mamba2", u(0.01, 0.6, B, 4, L), u(-2, -0.1, 4), r(B, 2, L, N), r(B, 2, L, N))
    w.add_s4d("s4d", u(-0.9, 0.9, 3, N), r(3, N), r(3, N))
    w.add_conv("conv", r(3, 5), pre_gate=r(B, 3, L), post_gate=r(B, 3, L))
    w.add_conv("longconv", r(2, L))
