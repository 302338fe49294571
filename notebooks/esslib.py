"""Helpers for reading ess results files (docs/results-format.md) in notebooks."""
import os

import h5py
import numpy as np


def results_path(default="../data/demo/results.h5"):
    """Results file to read: $ESS_RESULTS, else the shipped demo results."""
    return os.environ.get("ESS_RESULTS", default)


def figures_dir(default="figures"):
    """Where figures are saved: $ESS_FIGURES, else ./figures (created)."""
    d = os.environ.get("ESS_FIGURES", default)
    os.makedirs(d, exist_ok=True)
    return d


def _str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def load_layers(path):
    """List of dicts, one per layer, sorted by layer_index, with every dataset as numpy arrays."""
    layers = []
    with h5py.File(path, "r") as f:
        if _str(f.attrs.get("format", "")) != "ess-results":
            raise ValueError(f"{path}: not an ess results file")
        for name, g in f["layers"].items():
            d = {k: _str(v) if isinstance(v, (bytes, str)) else v for k, v in g.attrs.items()}
            d.setdefault("name", name)
            for k in g.keys():
                d[k] = g[k][...]
            if "attainable" not in d:
                i, L = d["indices"], int(d["seq_len"])
                d["attainable"] = np.minimum(d["tss"], np.minimum(i, L - i))
            layers.append(d)
    return sorted(layers, key=lambda d: int(d["layer_index"]))


def valid_mask(layer):
    """[B, C, I] True where the block converged (status 0)."""
    st = layer.get("status")
    return np.ones(layer["tolerance_ess"].shape, bool) if st is None else st == 0


def channel_utilization(layer, metric="tolerance"):
    """Per channel: mean over (batch, i) of ESS_i / min(TSS_i, i, L − i), blocks with bound 0 skipped."""
    ess = layer["tolerance_ess" if metric == "tolerance" else "entropy_ess"].astype(float)
    bound = layer["attainable"].astype(float)
    ok = valid_mask(layer) & (bound > 0)[None, None, :]
    ratio = np.where(ok, ess / np.where(bound > 0, bound, 1), np.nan)
    return np.nanmean(ratio, axis=(0, 2))


def classify(layer, metric="tolerance", saturated=0.9, collapsed=0.1):
    """Per channel: 'dead' / 'saturated' / 'collapsed' / 'healthy' (as `ess diagnose`)."""
    ess = layer["tolerance_ess" if metric == "tolerance" else "entropy_ess"]
    dead = ~np.any((ess > 0) & valid_mask(layer), axis=(0, 2))
    u = channel_utilization(layer, metric)
    return np.where(dead, "dead", np.where(u >= saturated, "saturated", np.where(u <= collapsed, "collapsed", "healthy")))


def tails(layer, states):
    """Mean and max Eckart–Young relative tail per student state, from `sigma` (needs --keep-sigma)."""
    if "sigma" not in layer:
        raise ValueError(f"layer {layer['name']}: no 'sigma' dataset; compute with --keep-sigma K")
    s = layer["sigma"].astype(np.float64)  # [B, C, I, K]
    rest2 = layer["sigma_tail"] ** 2 if "sigma_tail" in layer else 0.0
    norm = layer["frobenius_norm"] if "frobenius_norm" in layer else np.sqrt((s ** 2).sum(-1) + rest2)
    ok = valid_mask(layer)
    out = []
    for n in states:
        t2 = (s[..., n:] ** 2).sum(-1) + rest2
        t = np.where(norm > 0, np.sqrt(t2) / np.where(norm > 0, norm, 1), 0.0)
        out.append((n, float(t[ok].mean()), float(t[ok].max())))
    return out
