#!/usr/bin/env bash
# Streaming analyze (docs/analysis.md, "Memory"): each mixer's operator is measured as soon as the
# forward pass has captured it, then freed, so peak memory does not grow with the number of layers.
# The same random Mamba (data/checkpoints/tiny-mamba's shapes: 64 channels, state 8) with 2 and with
# 16 layers on 16384 tokens: keeping every layer's operator (Δ [L, E] plus B, C [L, N] in float64,
# ≈ 10 MB a layer) would add ≈ 140 MB for the 14 extra layers; the peak RSS (getrusage of the child)
# may differ by at most 40 MB.
set -uo pipefail
ESS=$1
. "$(dirname "$0")/peak_rss.bash"

$PY - "$root" "$tmp" <<'PYEOF' || exit 1
import json, os, sys
import numpy as np
root, tmp = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(root, "tools/reference"))
from st_io import load_checkpoint, write_safetensors  # noqa: E402
cfg, t = load_checkpoint(os.path.join(root, "data/checkpoints/tiny-mamba"))
n0 = cfg["num_hidden_layers"]
for nl in (2, 16):
    out = {k: v for k, v in t.items() if not k.startswith("backbone.layers.")}
    for l in range(nl):
        src = f"backbone.layers.{l % n0}."
        for k, v in t.items():
            if k.startswith(src):
                out[f"backbone.layers.{l}." + k[len(src):]] = v
    d = os.path.join(tmp, f"m{nl}")
    os.makedirs(d)
    c = dict(cfg, num_hidden_layers=nl)
    if "n_layer" in c:
        c["n_layer"] = nl
    json.dump(c, open(os.path.join(d, "config.json"), "w"))
    write_safetensors(os.path.join(d, "model.safetensors"), out, "F32")
rng = np.random.default_rng(0)
with open(os.path.join(tmp, "tokens.txt"), "w") as f:
    f.write(" ".join(str(x) for x in rng.integers(0, cfg["vocab_size"], 16384)) + "\n")
PYEOF

peak() { peak_rss "$ESS" "$tmp/m$1" "$tmp/tokens.txt" "$tmp/out$1.h5" 8; }
p2=$(peak 2) || { echo "FAIL: analyze 2 layers"; exit 1; }
p16=$(peak 16) || { echo "FAIL: analyze 16 layers"; exit 1; }
echo "peak RSS: 2 layers $((p2 / 1024)) MiB, 16 layers $((p16 / 1024)) MiB"
# (Both runs measured every layer: a run that stopped early would use less memory too.)
$PY - "$tmp" <<'PYEOF' || exit 1
import sys, h5py
for n in (2, 16):
    with h5py.File(f"{sys.argv[1]}/out{n}.h5", "r") as f:
        got = len(f["layers"])
    assert got == n, f"out{n}.h5 holds {got} layers, not {n}"
print("ok: the 2- and 16-layer results hold 2 and 16 layers")
PYEOF
if [ $((p16 - p2)) -gt $((40 * 1024)) ]; then
  echo "FAIL: peak memory grows with the number of layers ($((p2 / 1024)) → $((p16 / 1024)) MiB)"
  exit 1
fi
