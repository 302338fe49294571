#!/usr/bin/python3
"""Independent NumPy reference for `ess compute`: materializes each layer's dense T with
ess_writer.dense_T (straight from the DESIGN §3 formulas, no recurrence shared with the C++ code),
takes the singular values of every block H_i = T[i:, :i] with numpy.linalg.svd, and writes
tolerance-ESS / entropy-ESS / TSS in the results schema of DESIGN §5 (format "ess-results").
Slow (O(L^4) per channel): for tests and spot checks.

    ess_reference.py OPS.h5 -o REF.h5 [--tol 1e-3] [--tol-mode absolute|block|layer]
                     [--indices start:stop:step] [--seq-len L] [--sigma K]

Besides the schema it writes `threshold_margin` [B, C, I]: min_k |sigma_k - threshold| / threshold,
so tests can skip blocks where a singular value sits on the threshold (a tie).
"""
import argparse
import datetime
import hashlib
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ess_writer import channel_kind, dense_T, read_layer  # noqa: E402


def parse_indices(spec, L):
    """Same rules as `ess --indices`: start:stop:step, negatives count from L, one number = one block."""
    if L < 2:
        raise SystemExit(f"sequence length {L} has no blocks (need L >= 2)")
    if not spec:
        return np.arange(1, L)
    parts = spec.split(":")
    if len(parts) > 3:
        raise SystemExit(f"bad --indices '{spec}' (expected start:stop:step)")
    val = lambda s, d: d if s == "" else (int(s) + L if int(s) < 0 else int(s))  # noqa: E731
    start = val(parts[0], 1)
    stop = val(parts[1], L) if len(parts) >= 2 else start + 1
    step = int(parts[2]) if len(parts) == 3 and parts[2] else 1
    if step <= 0:
        raise SystemExit(f"bad --indices '{spec}': step must be positive")
    idx = np.arange(max(start, 1), min(stop, L), step)
    if idx.size == 0:
        raise SystemExit(f"--indices '{spec}' selects no block for L = {L}")
    return idx


def tss(family, kw, L):
    """TSS_i for i = 1..L-1 (DESIGN §2, docs/operators.md)."""
    i = np.arange(1, L)
    if family == "softmax_attention":
        # Past positions j < i that some row r >= i attends to (KV-cache entries kept after step i):
        # i for causal attention, min(i, w - 1) for a window w, the exact count for a mask.
        from ess_writer import _allowed
        allowed = _allowed(L, int(kw.get("window") or 0), kw.get("mask"))
        out = np.array([int(allowed[x:, :x].any(axis=0).sum()) for x in i])
        if kw.get("mask") is None:
            w = int(kw.get("window") or 0)
            assert np.array_equal(out, np.minimum(i, w - 1) if w else i)
        return out
    if family in ("linear_attention", "retention", "gla", "delta_net"):
        return np.full(L - 1, kw["q"].shape[3])
    if family == "mamba":
        return np.full(L - 1, kw["A"].shape[1])
    if family == "mamba2":
        return np.full(L - 1, kw["B"].shape[3])
    if family == "conv":
        return np.minimum(i, kw["h"].shape[1] - 1)
    if family == "s4d":
        # McMillan-degree bound of the real realization, largest over channels: a real mode counts 1,
        # a complex mode 2, and a conjugate pair (a_m = conj a_n, c_m b_m = conj(c_n b_n)) 2 in total.
        get = lambda n: kw[n + "_re"] + 1j * kw.get(n + "_im", 0.0)  # noqa: E731
        a, g = get("a"), get("c") * get("b")
        best = 0
        for c in range(a.shape[0]):
            dim, used = 0, np.zeros(a.shape[1], bool)
            for n in range(a.shape[1]):
                if a[c, n].imag == 0:
                    dim += 1
                    continue
                if used[n]:
                    continue
                dim += 2
                for m in range(n + 1, a.shape[1]):
                    sc = max(1.0, abs(a[c, n]), abs(g[c, n]))
                    if (not used[m] and a[c, m].imag != 0 and abs(a[c, m] - np.conj(a[c, n])) <= 1e-12 * sc
                            and abs(g[c, m] - np.conj(g[c, n])) <= 1e-12 * sc):
                        used[m] = True
                        break
            best = max(best, dim)
        return np.full(L - 1, best)
    return i  # dense


def entropy_ess(s):
    tot = s.sum()
    if tot <= 0:
        return 0.0
    p = s[s > 0] / tot
    return float(np.exp(-np.sum(p * np.log(p))))


def layer_results(family, kw, default_L, tol, tol_mode, indices_spec="", sigma_k=0):
    T = dense_T(family, seq_len=kw.pop("seq_len", None) or default_L or None, **kw)
    B, C, L, _ = T.shape
    idx = parse_indices(indices_spec, L)
    sig = [[[np.linalg.svd(T[b, c, i:, :i], compute_uv=False) for i in idx] for c in range(C)] for b in range(B)]
    smax = [max((s[0] for ch in sig[b] for s in ch if len(s)), default=0.0) for b in range(B)]
    I = len(idx)
    tol_ess = np.zeros((B, C, I), np.int32)
    ent = np.zeros((B, C, I))
    margin = np.zeros((B, C, I))
    sigma = np.zeros((B, C, I, sigma_k), np.float32) if sigma_k else None
    for b in range(B):
        for c in range(C):
            for p, s in enumerate(sig[b][c]):
                s1 = s[0] if len(s) else 0.0
                thr = {"absolute": tol, "block": tol * s1, "layer": tol * smax[b]}[tol_mode]
                tol_ess[b, c, p] = int(np.sum(s > thr))
                ent[b, c, p] = entropy_ess(s)
                margin[b, c, p] = np.min(np.abs(s - thr)) / max(thr, 1e-300) if len(s) else np.inf
                if sigma_k:
                    n = min(sigma_k, len(s))
                    sigma[b, c, p, :n] = s[:n]
    return {"L": L, "indices": idx.astype(np.int32), "tolerance_ess": tol_ess, "entropy_ess": ent,
            "tss": tss(family, kw, L)[idx - 1].astype(np.int32), "threshold_margin": margin, "sigma": sigma}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("operators")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--tol-mode", default="absolute", choices=["absolute", "block", "layer"])
    ap.add_argument("--indices", default="", help="start:stop:step subset of the blocks i (default all 1..L-1)")
    ap.add_argument("--seq-len", type=int, default=0, help="length for s4d / ungated conv without seq_len")
    ap.add_argument("--sigma", type=int, default=0, metavar="K", help="also store the top-K singular values")
    args = ap.parse_args(argv)
    with open(args.operators, "rb") as fh:
        sha = hashlib.sha256(fh.read()).hexdigest()
    out_dir = os.path.dirname(os.path.abspath(args.output))
    tmp = os.path.join(out_dir, "." + os.path.basename(args.output) + f".{os.getpid()}.tmp")
    try:
        with h5py.File(args.operators, "r") as f, h5py.File(tmp, "w") as out:
            fmt = f.attrs.get("format", b"")
            fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
            if fmt not in ("ess-operators",):
                raise SystemExit(f"{args.operators}: format '{fmt}' is not 'ess-operators'")
            out.attrs["format"] = "ess-results"
            out.attrs["format_version"] = np.array([1, 0], dtype=np.int64)
            out.attrs["creator"] = "ess_reference.py 0.1"
            out.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            out.attrs["command_line"] = " ".join(sys.argv if argv is None else ["ess_reference.py"] + list(argv))
            out.attrs["source"] = args.operators
            out.attrs["source_sha256"] = sha
            out.attrs["input"] = "operator file"
            default_L = int(f.attrs["seq_len"]) if "seq_len" in f.attrs else args.seq_len
            if args.seq_len:
                default_L = args.seq_len
            for name, g in f["layers"].items():
                fam, kw = read_layer(g)
                r = layer_results(fam, kw, default_L, args.tol, args.tol_mode, args.indices, args.sigma)
                og = out.create_group(f"layers/{name}")
                og.attrs["name"] = name
                og.attrs["family"] = fam
                og.attrs["layer_index"] = np.int64(g.attrs["layer_index"])
                og.attrs["channel_kind"] = channel_kind(fam)
                og.attrs["seq_len"] = np.int64(r["L"])
                og.attrs["engine"] = "numpy-dense"
                og.attrs["tol"] = float(args.tol)
                og.attrs["tol_mode"] = args.tol_mode
                for k in ("tolerance_ess", "entropy_ess", "tss", "indices", "threshold_margin"):
                    og[k] = r[k]
                if r["sigma"] is not None:
                    og["sigma"] = r["sigma"]
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
