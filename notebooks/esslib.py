"""Helpers for reading ess results files (docs/results-format.md) in notebooks.

Everything here mirrors what `ess diagnose` / `ess compress` compute (docs/analysis.md), in NumPy,
straight from the documented HDF5 schema, so a notebook can be read without the C++ tool.
"""
import os

import h5py
import numpy as np


def results_path(default="../data/demo/results.h5"):
    """Results file to read: $ESS_RESULTS, else the shipped demo results (relative to notebooks/)."""
    return os.environ.get("ESS_RESULTS", default)


def figures_dir(default="figures"):
    """Where figures are saved: $ESS_FIGURES, else ./figures (created)."""
    d = os.environ.get("ESS_FIGURES", default)
    os.makedirs(d, exist_ok=True)
    return d


def _str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def load_layers(path):
    """List of dicts, one per layer, sorted by layer_index: the layer's attributes plus every
    dataset as a numpy array (tolerance_ess [B, C, I], entropy_ess, tss [I], indices [I],
    attainable [I], optional sigma [B, C, I, K], sigma_tail, frobenius_norm, status; the optional
    "students" group as a dict of its datasets, docs/results-format.md)."""
    layers = []
    with h5py.File(path, "r") as f:
        if _str(f.attrs.get("format", "")) != "ess-results":
            raise ValueError(f"{path}: not an ess results file (format {f.attrs.get('format')!r})")
        major = int(np.asarray(f.attrs["format_version"])[0])
        if major > 1:
            raise ValueError(f"{path}: results format version {major}.x is newer than this notebook (1.x)")
        for name, g in f["layers"].items():
            d = {k: _str(v) if isinstance(v, (bytes, str)) else v for k, v in g.attrs.items()}
            d.setdefault("name", name)
            for k in g.keys():
                if isinstance(g[k], h5py.Group):  # e.g. "students": a dict of its datasets
                    d[k] = {kk: g[k][kk][...] for kk in g[k].keys()}
                else:
                    d[k] = g[k][...]
            if "attainable" not in d:
                i, L = d["indices"], int(d["seq_len"])
                d["attainable"] = np.minimum(d["tss"], np.minimum(i, L - i))
            layers.append(d)
    return sorted(layers, key=lambda d: int(d["layer_index"]))


def label(layer):
    return f"layer {int(layer['layer_index'])}: {layer['name']} ({layer['family']})"


def valid_mask(layer):
    """[B, C, I] True where the block converged (status 0)."""
    st = layer.get("status")
    return np.ones(layer["tolerance_ess"].shape, bool) if st is None else st == 0


def ess(layer, metric="tolerance"):
    """[B, C, I] float ESS with NaN for blocks whose status is not ok."""
    e = layer["tolerance_ess" if metric == "tolerance" else "entropy_ess"].astype(float)
    return np.where(valid_mask(layer), e, np.nan)


# The defaults of `ess diagnose` (analysis/diagnosis.h, calibrated on the zoo: docs/analysis.md).
DEFAULT_BASIS, DEFAULT_SATURATED, DEFAULT_COLLAPSED = "state", 0.8, 0.3


def channel_utilization(layer, metric="tolerance", basis=DEFAULT_BASIS):
    """Per channel: mean over (batch, i) of ESS_i / TSS_i (basis "state", blocks with TSS_i = 0
    skipped) or ESS_i / min(TSS_i, i, L − i) (basis "attainable", blocks with bound 0 skipped)."""
    e = ess(layer, metric)
    bound = (layer["tss"] if basis == "state" else layer["attainable"]).astype(float)
    ok = np.isfinite(e) & (bound > 0)[None, None, :]
    ratio = np.where(ok, e / np.where(bound > 0, bound, 1), np.nan)
    with np.errstate(invalid="ignore"):
        return np.nanmean(ratio, axis=(0, 2))


def classify(layer, metric="tolerance", saturated=DEFAULT_SATURATED, collapsed=DEFAULT_COLLAPSED,
             basis=DEFAULT_BASIS):
    """Per channel: 'unmeasured' (no usable block) / 'dead' / 'saturated' / 'collapsed' / 'healthy'
    (as `ess diagnose`)."""
    e = ess(layer, metric)
    measured = np.any(np.isfinite(e), axis=(0, 2))
    dead = ~np.any(np.nan_to_num(e) > 0, axis=(0, 2))
    u = channel_utilization(layer, metric, basis)
    return np.where(~measured, "unmeasured", np.where(dead, "dead", np.where(
        u >= saturated, "saturated", np.where(u <= collapsed, "collapsed", "healthy"))))


def verdict(classes):
    """Layer verdict from the channel classes (the rules of `ess diagnose`, docs/analysis.md)."""
    classes = np.asarray(classes)
    n = len(classes) - int((classes == "unmeasured").sum())  # measured channels
    dead = int((classes == "dead").sum())
    live = n - dead
    if n == 0:
        return "unmeasured"
    if live == 0:
        return "dead"
    if 2 * dead > n:
        return "partly dead"
    for k in ("saturated", "collapsed", "healthy"):
        if 2 * int((classes == k).sum()) > live:
            return k
    return "mixed"


def layer_utilization(layer, metric="tolerance", basis=DEFAULT_BASIS):
    """Mean over channels of their utilization, dead channels counting 0 (the `utilization` of diagnose)."""
    u = channel_utilization(layer, metric, basis)
    u = np.where(classify(layer, metric, basis=basis) == "dead", 0.0, u)
    return float(np.nanmean(u)) if np.isfinite(u).any() else 0.0


def tails(layer, states):
    """Eckart–Young relative tails sqrt(Σ_{k>N} σ_k²)/‖H_i‖_F per student state N, from `sigma`.

    Returns a list of dicts {state, mean_tail, max_tail, frac_exceeding} over every usable block
    of every batch element and channel (needs --keep-sigma K ≥ max(states))."""
    if "sigma" not in layer:
        raise ValueError(f"layer {layer['name']}: no 'sigma' dataset; compute with --keep-sigma K")
    s = layer["sigma"].astype(np.float64)  # [B, C, I, K]
    K = s.shape[-1]
    rest2 = layer["sigma_tail"] ** 2 if "sigma_tail" in layer else 0.0
    norm = layer["frobenius_norm"] if "frobenius_norm" in layer else np.sqrt((s ** 2).sum(-1) + rest2)
    ok = valid_mask(layer)
    out = []
    for n in states:
        if n > K:
            raise ValueError(f"layer {layer['name']}: only K = {K} singular values kept, fewer than state {n}")
        t2 = (s[..., n:] ** 2).sum(-1) + rest2
        t = np.where(norm > 0, np.sqrt(t2) / np.where(norm > 0, norm, 1), 0.0)
        out.append(dict(state=n, mean_tail=float(t[ok].mean()), max_tail=float(t[ok].max()),
                        frac_exceeding=float((layer["tolerance_ess"][ok] > n).mean())))
    return out


def recommended_state(rows, max_error=1e-2):
    """Smallest state whose mean tail is at most max_error (None if none)."""
    ok = [r["state"] for r in rows if r["mean_tail"] <= max_error]
    return min(ok) if ok else None


def load_predictions(path):
    """The model's own predictions stored by `ess analyze` (/model, docs/results-format.md), or None
    when the file has none (`ess compute`, or results format 1.0): dict with input_ids, argmax
    [B, L] int, logprobs [B, L] float64 (log p(token t+1 | tokens ≤ t), NaN at t = L−1), loss and
    perplexity."""
    with h5py.File(path, "r") as f:
        if "model" not in f:
            return None
        g = f["model"]
        d = {k: g[k][...] for k in ("input_ids", "argmax", "logprobs")}
        d.update({k: float(g.attrs[k]) for k in ("loss", "perplexity")})
    return d


def per_position(path, metric="tolerance"):
    """ESS_i beside the loss of predicting token i from tokens < i (`ess report --per-position`).

    Block H_i = T[i:, :i] has exactly tokens 0..i−1 as columns, so ESS_i is the state the model
    carries into predicting token i. Returns dict: i [n] (every block index measured in some layer),
    loss [n] (−mean over the batch of logprobs[:, i−1]), accuracy [n] (argmax right), layers [names],
    ess [n_layers, n] (mean over batch and channels, NaN where a layer did not measure i); loss and
    accuracy are NaN without /model."""
    layers = load_layers(path)
    idx = sorted({int(i) for d in layers for i in d["indices"]})
    pos = {i: k for k, i in enumerate(idx)}
    E = np.full((len(layers), len(idx)), np.nan)
    for l, d in enumerate(layers):
        with np.errstate(invalid="ignore"):
            prof = np.nanmean(ess(d, metric), axis=(0, 1))
        for k, i in enumerate(d["indices"]):
            E[l, pos[int(i)]] = prof[k]
    i = np.array(idx, dtype=int)
    loss = np.full(len(idx), np.nan)
    acc = np.full(len(idx), np.nan)
    p = load_predictions(path)
    if p is not None:
        ok = i < p["logprobs"].shape[1]
        loss[ok] = -p["logprobs"][:, i[ok] - 1].mean(axis=0)
        acc[ok] = (p["argmax"][:, i[ok] - 1] == p["input_ids"][:, i[ok]]).mean(axis=0)
    return dict(i=i, loss=loss, accuracy=acc, layers=[d["name"] for d in layers], ess=E)
