#!/usr/bin/python3
"""Independent NumPy reference for `ess compute`: builds each layer's dense T straight from the
DESIGN §3 formulas (no recurrences shared with the C++ code), takes the singular values of every
block H_i = T[i:, :i] with numpy.linalg.svd, and writes tolerance-ESS / entropy-ESS in the
results schema (docs/results-format.md). Slow (O(L^4) per channel): for tests and spot checks.

    ess_reference.py OPS.h5 -o REF.h5 [--tol 1e-3] [--tol-mode absolute|block|layer] [--seq-len L]
"""
import argparse
import sys

import h5py
import numpy as np


def _softmax_T(q, k, scale, window, mask):
    B, H, L, d = q.shape
    if scale is None or scale <= 0:
        scale = 1.0 / np.sqrt(d)
    i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    allowed = j <= i
    if window:
        allowed &= (i - j) < window
    if mask is not None:
        allowed &= mask.astype(bool)
    S = np.einsum("bhid,bhjd->bhij", q, k) * scale
    S = np.where(allowed, S, -np.inf)
    S = S - S.max(axis=-1, keepdims=True)
    E = np.exp(S)
    return E / E.sum(axis=-1, keepdims=True)


def _decay_sum_T(q, k, logdecay):
    """T_ij = sum_n q_i[n] k_j[n] exp(sum_{m=j+1..i} g_m[n]) for i >= j (g: [B,H,L,d])."""
    c = np.cumsum(logdecay, axis=2)  # c_i = sum_{m<=i} g_m
    L = q.shape[2]
    T = np.zeros(q.shape[:2] + (L, L))
    for i in range(L):
        for j in range(i + 1):
            T[:, :, i, j] = np.sum(q[:, :, i] * k[:, :, j] * np.exp(c[:, :, i] - c[:, :, j]), axis=-1)
    return T


def dense_T(family, g, default_seq_len=0):
    """Materialized T [B, C, L, L] of one operator-file layer group."""
    a = {k: g[k][...] for k in g.keys()}
    at = dict(g.attrs)
    if family == "dense":
        return a["T"].astype(np.float64)
    if family == "softmax_attention":
        return _softmax_T(a["q"], a["k"], at.get("scale"), int(at.get("window", 0)), a.get("mask"))
    if family == "linear_attention":
        T = np.tril(np.einsum("bhid,bhjd->bhij", a["q"], a["k"]))
        if int(at.get("normalize", 0)):
            T = T / T.sum(axis=-1, keepdims=True)
        return T
    if family == "retention":
        q, k, dec = a["q"], a["k"], a["decay"]
        B, H, L, d = q.shape
        gam = np.broadcast_to(dec.reshape(H, -1), (H, d))
        T = np.zeros((B, H, L, L))
        for i in range(L):
            for j in range(i + 1):
                T[:, :, i, j] = np.sum(q[:, :, i] * k[:, :, j] * gam[None] ** (i - j), axis=-1)
        return T
    if family == "gla":
        return _decay_sum_T(a["q"], a["k"], a["log_decay"])
    if family == "delta_net":
        q, k, beta = a["q"], a["k"], a["beta"]
        gate = np.exp(a["log_gate"]) if "log_gate" in a else np.ones_like(beta)
        B, H, L, d = q.shape
        T = np.zeros((B, H, L, L))
        for b in range(B):
            for h in range(H):
                for j in range(L):
                    v = beta[b, h, j] * k[b, h, j]  # beta_j k_j
                    for i in range(j, L):
                        if i > j:  # v <- A_i v, A_i = e^{g_i}(I - beta_i k_i k_i^T)
                            v = gate[b, h, i] * (v - beta[b, h, i] * k[b, h, i] * (k[b, h, i] @ v))
                        T[b, h, i, j] = q[b, h, i] @ v
        return T
    if family == "mamba":
        dt, A, Bm, Cm = a["dt"], a["A"], a["B"], a["C"]
        Bsz, C, L = dt.shape
        c = np.cumsum(dt, axis=2)  # [B, C, L]
        T = np.zeros((Bsz, C, L, L))
        for i in range(L):
            for j in range(i + 1):
                decay = np.exp(A[None] * (c[:, :, i] - c[:, :, j])[..., None])  # [B, C, N]
                T[:, :, i, j] = np.sum(Cm[:, None, i] * Bm[:, None, j] * decay, axis=-1) * dt[:, :, j]
        return T
    if family == "mamba2":
        dt, A, Bm, Cm = a["dt"], a["A"], a["B"], a["C"]
        Bsz, H, L = dt.shape
        G = Bm.shape[1]
        grp = np.arange(H) // (H // G)
        c = np.cumsum(dt, axis=2)
        CB = np.einsum("bgin,bgjn->bgij", Cm, Bm)[:, grp]  # [B, H, L, L]
        T = CB * np.exp(A[None, :, None, None] * (c[:, :, :, None] - c[:, :, None, :])) * dt[:, :, None, :]
        return np.tril(T)
    if family == "s4d":
        L = int(at.get("seq_len", default_seq_len))
        cplx = lambda n: a[n + "_re"] + 1j * a.get(n + "_im", 0.0)
        av, bv, cv = cplx("a"), cplx("b"), cplx("c")
        C = av.shape[0]
        T = np.zeros((1, C, L, L))
        for i in range(L):
            for j in range(i + 1):
                T[0, :, i, j] = np.real(np.sum(cv * av ** (i - j) * bv, axis=-1))
        return T
    if family == "conv":
        h = a["h"]
        C, K = h.shape
        pre, post = a.get("pre_gate"), a.get("post_gate")
        gate = pre if pre is not None else post
        if gate is not None:
            Bsz, L = gate.shape[0], gate.shape[2]
        else:
            Bsz, L = 1, int(at.get("seq_len", default_seq_len))
        T = np.zeros((Bsz, C, L, L))
        for i in range(L):
            for j in range(max(0, i - K + 1), i + 1):
                T[:, :, i, j] = h[None, :, i - j]
        if pre is not None:
            T = T * pre[:, :, None, :]
        if post is not None:
            T = T * post[:, :, :, None]
        return T
    raise ValueError(f"unknown family {family}")


def tss(family, g, L, default_seq_len=0):
    at = dict(g.attrs)
    i = np.arange(1, L)
    if family == "softmax_attention":
        w = int(at.get("window", 0))
        if "mask" not in g:
            return np.minimum(i, w - 1) if w else i
        m = g["mask"][...].astype(bool)
        jj, ii = np.meshgrid(np.arange(L), np.arange(L))
        allowed = (jj <= ii) & m & (((ii - jj) < w) if w else True)
        last = np.array([ii[:, j][allowed[:, j]].max() if allowed[:, j].any() else -1 for j in range(L)])
        return np.array([np.sum(last[:x] >= x) for x in i])
    if family in ("linear_attention", "retention", "gla", "delta_net"):
        return np.full(L - 1, g["q"].shape[3])
    if family in ("mamba", "mamba2"):
        return np.full(L - 1, g["A"].shape[-1] if family == "mamba" else g["B"].shape[3])
    if family == "conv":
        return np.minimum(i, g["h"].shape[1] - 1)
    if family == "s4d":
        return np.full(L - 1, g["a_re"].shape[1])  # real modes; see docs/operators.md for complex
    return i


def block_sigma(T, i):
    return np.linalg.svd(T[i:, :i], compute_uv=False)


def entropy_ess(s):
    tot = s.sum()
    if tot <= 0:
        return 0.0
    p = s[s > 0] / tot
    return float(np.exp(-np.sum(p * np.log(p))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("operators")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--tol-mode", default="absolute", choices=["absolute", "block", "layer"])
    ap.add_argument("--seq-len", type=int, default=0)
    args = ap.parse_args(argv)
    with h5py.File(args.operators, "r") as f, h5py.File(args.output, "w") as out:
        out.attrs["format"] = "ess-results"
        out.attrs["format_version"] = np.array([1, 0], dtype=np.int64)
        out.attrs["creator"] = "ess_reference.py"
        default_L = int(f.attrs.get("seq_len", args.seq_len)) or args.seq_len
        for name, g in f["layers"].items():
            fam = g.attrs["family"]
            fam = fam.decode() if isinstance(fam, bytes) else str(fam)
            T = dense_T(fam, g, default_L)
            B, C, L, _ = T.shape
            sig = [[[block_sigma(T[b, c], i) for i in range(1, L)] for c in range(C)] for b in range(B)]
            smax = [max(s[0] if len(s) else 0.0 for ch in sig[b] for s in ch) for b in range(B)]
            tol_ess = np.zeros((B, C, L - 1), dtype=np.int32)
            ent = np.zeros((B, C, L - 1))
            for b in range(B):
                for c in range(C):
                    for p, s in enumerate(sig[b][c]):
                        s1 = s[0] if len(s) else 0.0
                        thr = {"absolute": args.tol, "block": args.tol * s1, "layer": args.tol * smax[b]}[args.tol_mode]
                        tol_ess[b, c, p] = int(np.sum(s > thr))
                        ent[b, c, p] = entropy_ess(s)
            og = out.create_group(f"layers/{name}")
            for k, v in {"family": fam, "layer_index": int(g.attrs["layer_index"]),
                         "channel_kind": "head" if fam in ("softmax_attention", "linear_attention", "retention", "gla",
                                                           "delta_net", "mamba2") else "channel",
                         "seq_len": L, "engine": "numpy-dense", "tol": args.tol, "tol_mode": args.tol_mode}.items():
                og.attrs[k] = v
            og["tolerance_ess"] = tol_ess
            og["entropy_ess"] = ent
            og["tss"] = tss(fam, g, L, default_L).astype(np.int32)
            og["indices"] = np.arange(1, L, dtype=np.int32)
            # Smallest distance of any sigma to its threshold, relative: lets tests skip ties.
            near = np.zeros((B, C, L - 1))
            for b in range(B):
                for c in range(C):
                    for p, s in enumerate(sig[b][c]):
                        s1 = s[0] if len(s) else 0.0
                        thr = {"absolute": args.tol, "block": args.tol * s1, "layer": args.tol * smax[b]}[args.tol_mode]
                        near[b, c, p] = np.min(np.abs(s - thr)) / max(thr, 1e-300) if len(s) else np.inf
            og["threshold_margin"] = near
    return 0


if __name__ == "__main__":
    sys.exit(main())
