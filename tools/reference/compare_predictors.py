#!/usr/bin/python3
"""Is one predictor of accuracy better than another? A paired bootstrap over the models of an
`ess study` output (docs/findings.md §1).

    compare_predictors.py [STUDY.json] [--baseline tss/kv] [--bootstrap 2000] [--seed 0] [-o OUT.json]
                          [--context-from RESULTS_DIR]

Separate intervals for ρ(ESS/kv, accuracy) and ρ(TSS/kv, accuracy) may overlap while one predictor
is better on almost every resample: both are computed on the same models, so their errors are
correlated. For each predictor P this resamples the models (with replacement, the same resample for
P and the baseline) and reports the difference Δ = ρ_S(P, accuracy) − ρ_S(baseline, accuracy) (and
the same for Pearson) with its 95% percentile interval and the fraction of resamples with Δ ≤ 0.
Resamples where either correlation is undefined (a constant column) are skipped.

--context-from DIR (an exploratory, length-aware normalisation): adds the predictors
ctx_entropy_ess/kv and ctx_min_layer_entropy_ess/kv — entropy-ESS of the block at i = 2·kv (the
past is exactly the key–value context), mean over batch and heads/channels, over layers or the
smallest layer, divided by kv — read from DIR/NAME.h5 (the results files `ess study --results-dir`
writes). Tolerance-ESS is not used there: at i = 2·kv it is capped by i (≤ 2·kv).
"""
import argparse
import json
import os
import sys

import numpy as np
import scipy.stats as ss

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def pearson_rows(x, y):
    """Pearson r of each row of x with the same row of y (NaN where a row is constant)."""
    x = x - x.mean(axis=1, keepdims=True)
    y = y - y.mean(axis=1, keepdims=True)
    den = np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(axis=1) / den, np.nan)


def corr_rows(x, y):
    """(Spearman ρ, Pearson r) per row: ρ is Pearson's r of the average ranks (scipy.stats.spearmanr)."""
    rx, ry = ss.rankdata(x, axis=1), ss.rankdata(y, axis=1)
    return pearson_rows(rx, ry), pearson_rows(x, y)


def compare(rows, baseline, n_boot, seed):
    acc = np.array([r["accuracy"] for r in rows])
    names = sorted(rows[0]["predictors"])
    X = {p: np.array([r["predictors"][p] for r in rows], dtype=float) for p in names}
    rng = np.random.default_rng(seed)
    idx = np.array([rng.integers(0, len(rows), len(rows)) for _ in range(n_boot)])
    A = acc[idx]
    b_s, b_p = corr_rows(X[baseline][idx], A)
    bs, bp = (v[0] for v in corr_rows(X[baseline][None], acc[None]))
    out = []
    for p in names:
        if p == baseline:
            continue
        rs, rp = (v[0] for v in corr_rows(X[p][None], acc[None]))
        s_, p_ = corr_rows(X[p][idx], A)
        ok = np.isfinite(s_) & np.isfinite(b_s)
        ds, dp = (s_ - b_s)[ok], (p_ - b_p)[ok]
        out.append({"predictor": p, "baseline": baseline, "n": len(rows), "valid_resamples": int(ok.sum()),
                    "spearman": float(rs), "pearson": float(rp), "baseline_spearman": float(bs),
                    "baseline_pearson": float(bp),
                    "spearman_diff": float(rs - bs),
                    "spearman_diff_ci": [float(np.percentile(ds, 2.5)), float(np.percentile(ds, 97.5))],
                    "spearman_frac_not_better": float(np.mean(ds <= 0)),
                    "pearson_diff": float(rp - bp),
                    "pearson_diff_ci": [float(np.percentile(dp, 2.5)), float(np.percentile(dp, 97.5))],
                    "pearson_frac_not_better": float(np.mean(dp <= 0))})
    return out


def add_context_predictors(rows, results_dir):
    import h5py
    for r in rows:
        kv, ent = r["kv"], []
        with h5py.File(os.path.join(results_dir, r["name"] + ".h5"), "r") as f:
            for g in f["layers"].values():
                idx = g["indices"][...]
                k = np.flatnonzero(idx == 2 * kv)
                if not len(k):
                    raise SystemExit(f"{results_dir}/{r['name']}.h5: no block at i = 2·kv = {2 * kv}")
                ent.append(float(g["entropy_ess"][..., k[0]].mean()))
        r["predictors"]["ctx_entropy_ess/kv"] = float(np.mean(ent)) / kv
        r["predictors"]["ctx_min_layer_entropy_ess/kv"] = min(ent) / kv


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", nargs="?", default=os.path.join(ROOT, "data", "findings", "study.json"))
    ap.add_argument("--baseline", default="tss/kv")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output")
    ap.add_argument("--context-from", help="results directory: add ESS at i = 2·kv (see the docstring)")
    a = ap.parse_args()
    study = json.load(open(a.study))
    rows = study["rows"]
    if a.context_from:
        add_context_predictors(rows, a.context_from)
    res = compare(rows, a.baseline, a.bootstrap, a.seed)
    print(f"{len(rows)} models; paired bootstrap ({a.bootstrap} resamples, seed {a.seed}) against {a.baseline}")
    print("| predictor | Spearman | Δ Spearman | interval | P(Δ ≤ 0) | Δ Pearson | interval | P(Δ ≤ 0) |")
    print("| :-- | --: | --: | :-- | --: | --: | :-- | --: |")
    for r in res:
        print(f"| {r['predictor']} | {r['spearman']:.3f} | {r['spearman_diff']:+.3f} | [{r['spearman_diff_ci'][0]:+.3f}, {r['spearman_diff_ci'][1]:+.3f}] "
              f"| {r['spearman_frac_not_better']:.3f} | {r['pearson_diff']:+.3f} | [{r['pearson_diff_ci'][0]:+.3f}, "
              f"{r['pearson_diff_ci'][1]:+.3f}] | {r['pearson_frac_not_better']:.3f} |")
    if a.output:
        tmp = a.output + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"command": "/usr/bin/python3 tools/reference/compare_predictors.py " + " ".join(sys.argv[1:]),
                       "study": os.path.relpath(os.path.abspath(a.study), ROOT), "bootstrap": a.bootstrap,
                       "seed": a.seed, "context_from": bool(a.context_from), "comparisons": res}, f, indent=1)
        os.replace(tmp, a.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
