#!/usr/bin/python3
"""Writes a small random operator file with every family ess_writer knows (for the CLI tests).

    make_random_ops.py OUT.h5 [SEED]      write the file
    make_random_ops.py --families         print the families it writes, one per line

Each family has its generator below; a family in ess_writer.FAMILIES without one is an error, so
adding a family to the writer without a test case fails here (CONTRIBUTING.md)."""
import sys

import numpy as np

sys.path.insert(0, sys.path[0] + "/../../tools/python")
from ess_writer import FAMILIES, OperatorFileWriter  # noqa: E402

B, H, L, d, N = 2, 2, 14, 3, 4


def attention_mask():
    mask = np.tril(np.ones((L, L), dtype=np.uint8)) * ((np.arange(L)[:, None] - np.arange(L)[None, :]) % 3 == 0)
    mask[:, 0] = 1
    return np.tril(mask)


# family -> writes one or more layers of that family with random tensors from (r, u).
GENERATORS = {
    "dense": lambda w, r, u: w.add_dense("dense", np.tril(r(B, H, L, L))),
    "softmax_attention": lambda w, r, u: (
        w.add_softmax_attention("attn", r(B, H, L, d), r(B, H, L, d)),
        w.add_softmax_attention("attn_window", r(B, H, L, d), r(B, H, L, d), window=4, scale=0.8),
        w.add_softmax_attention("attn_mask", r(B, H, L, d), r(B, H, L, d), mask=attention_mask()),
        # Gemma-2's capped logits, a cap the scores reach (1.5·q·k with d = 3): every engine must
        # apply it (the lanczos engine's products ignored it before 2026-12-02).
        w.add_softmax_attention("attn_softcap", r(B, H, L, d), r(B, H, L, d), scale=1.5, softcap=1.0)),
    "linear_attention": lambda w, r, u: (
        w.add_linear_attention("linear", u(0.1, 1, B, H, L, d), u(0.1, 1, B, H, L, d), normalize=True),
        w.add_linear_attention("linear_plain", r(B, H, L, d), r(B, H, L, d))),
    "retention": lambda w, r, u: (
        w.add_retention("retention", r(B, H, L, d), r(B, H, L, d), u(0.5, 0.95, H, d)),
        w.add_retention("retention_head", r(B, H, L, d), r(B, H, L, d), u(0.5, 0.95, H))),
    "gla": lambda w, r, u: w.add_gla("gla", r(B, H, L, d), r(B, H, L, d), u(-0.6, 0, B, H, L, d)),
    "delta_net": lambda w, r, u: (
        w.add_delta_net("delta", r(B, H, L, d), r(B, H, L, d) * 0.5, u(0, 1, B, H, L), log_gate=u(-0.3, 0, B, H, L)),
        w.add_delta_net("delta_ungated", r(B, H, L, d), r(B, H, L, d) * 0.5, u(0, 1, B, H, L))),
    "mamba": lambda w, r, u: w.add_mamba("mamba", u(0.01, 0.6, B, 3, L), u(-2, -0.1, 3, N), r(B, L, N), r(B, L, N)),
    "mamba2": lambda w, r, u: w.add_mamba2("mamba2", u(0.01, 0.6, B, 4, L), u(-2, -0.1, 4), r(B, 2, L, N),
                                           r(B, 2, L, N)),
    "s4d": lambda w, r, u: (
        w.add_s4d("s4d", u(-0.9, 0.9, 3, N), r(3, N), r(3, N)),
        w.add_s4d("s4d_complex", u(-0.6, 0.6, 2, N), r(2, N), r(2, N), a_im=u(0.1, 0.5, 2, N), b_im=r(2, N),
                  c_im=r(2, N))),
    "conv": lambda w, r, u: (w.add_conv("conv", r(3, 5), pre_gate=r(B, 3, L), post_gate=r(B, 3, L)),
                             w.add_conv("conv_post_gate", r(2, 4), post_gate=r(B, 2, L)),
                             w.add_conv("longconv", r(2, L))),
}

missing = [f for f in FAMILIES if f not in GENERATORS]
unknown = [f for f in GENERATORS if f not in FAMILIES]
if missing or unknown:
    sys.exit(f"make_random_ops.py: no generator for {missing}; not in ess_writer.FAMILIES: {unknown}")

if sys.argv[1] == "--families":
    print("\n".join(GENERATORS))
    sys.exit(0)

out, seed = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
rng = np.random.default_rng(seed)
r = lambda *s: rng.standard_normal(s)  # noqa: E731
u = lambda lo, hi, *s: rng.uniform(lo, hi, s)  # noqa: E731
with OperatorFileWriter(out, seq_len=L) as w:
    for family in FAMILIES:
        GENERATORS[family](w, r, u)
