"""Helpers for the findings notebooks (04–07): where the shipped findings and the zoo live, how to
call the `ess` binary, and small plotting utilities. Verdicts come from `ess diagnose --format json`
(never re-implemented here); correlations are recomputed with scipy from the tables `ess study`
wrote, so a notebook checks the numbers it plots.
"""
import json
import os
import shutil
import subprocess

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, ".."))
FINDINGS = os.path.join(ROOT, "data", "findings")
ZOO = os.path.join(ROOT, "data", "zoo")

FAMILY_COLORS = {"sa": "tab:blue", "gla": "tab:red", "la": "tab:green", "mamba2": "tab:orange",
                 "mamba": "tab:purple", "gla0": "tab:gray"}


def figures_dir(default="figures"):
    d = os.environ.get("ESS_FIGURES", default)
    os.makedirs(d, exist_ok=True)
    return d


def load(name):
    """A shipped findings file: data/findings/NAME (JSON)."""
    with open(os.path.join(FINDINGS, name)) as f:
        return json.load(f)


def manifest():
    with open(os.path.join(ZOO, "manifest.json")) as f:
        return json.load(f)


def ess_binary():
    """$ESS_BIN, else the build tree's ess, else `ess` on PATH; None if there is none."""
    for cand in (os.environ.get("ESS_BIN"), os.path.join(ROOT, "build", "ess"), shutil.which("ess")):
        if cand and os.path.exists(cand):
            return cand
    return None


def ess_json(*args):
    """Runs `ess ARGS --format json` and parses its output."""
    exe = ess_binary()
    if exe is None:
        raise RuntimeError("no ess binary: build it (tools/build.sh) or set ESS_BIN")
    out = subprocess.run([exe, *args, "--format", "json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def spearman_pearson(x, y):
    import scipy.stats as ss
    x, y = np.asarray(x, float), np.asarray(y, float)
    return ss.spearmanr(x, y)[0], ss.pearsonr(x, y)[0]
