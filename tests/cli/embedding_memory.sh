#!/usr/bin/env bash
# The embedding is held once in float64 (docs/checkpoints.md, "Real shapes"): the lookup reads only
# the rows of the ids in the input, and the tied head converts the whole matrix at the end, dropping
# the file's pages as it goes. data/checkpoints/tiny-mamba (hidden 32, tied) with its vocabulary
# grown from 96 to 96 + 409600 rows (≈ 105 MB more in float64, 52 MB more on disk in F32): the peak
# RSS (getrusage of the child) may grow by at most 1.3 × the float64 growth. Converting the whole
# embedding for the lookup as well, or holding the file's pages while converting, grows it by
# ≈ 2–2.5 ×.
set -uo pipefail
ESS=$1
. "$(dirname "$0")/peak_rss.bash"
extra=409600

$PY - "$root" "$tmp" "$extra" <<'PYEOF' || exit 1
import json, os, sys
import numpy as np
root, tmp, extra = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, os.path.join(root, "tools/reference"))
from st_io import load_checkpoint, write_safetensors  # noqa: E402
cfg, t = load_checkpoint(os.path.join(root, "data/checkpoints/tiny-mamba"))
name = "backbone.embedding.weight"
assert name in t and cfg.get("tie_word_embeddings", True), "tiny-mamba must have a tied embedding"
rng = np.random.default_rng(0)
for tag, rows in (("small", 0), ("large", extra)):
    out = dict(t)
    emb = np.asarray(t[name])
    out[name] = np.concatenate([emb, rng.standard_normal((rows, emb.shape[1])).astype(emb.dtype)])
    d = os.path.join(tmp, tag)
    os.makedirs(d)
    json.dump(dict(cfg, vocab_size=int(out[name].shape[0])), open(os.path.join(d, "config.json"), "w"))
    write_safetensors(os.path.join(d, "model.safetensors"), out, "F32")
with open(os.path.join(tmp, "tokens.txt"), "w") as f:
    f.write(" ".join(str(x) for x in rng.integers(0, cfg["vocab_size"], 256)) + "\n")
PYEOF

peak() { peak_rss "$ESS" "$tmp/$1" "$tmp/tokens.txt" "$tmp/out-$1.h5" 4; }
small=$(peak small) || { echo "FAIL: analyze with the small vocabulary"; exit 1; }
large=$(peak large) || { echo "FAIL: analyze with the large vocabulary"; exit 1; }
grown=$((extra * 32 * 8 / 1024))  # KiB of float64 embedding added
echo "peak RSS: vocabulary 96 → $((small / 1024)) MiB, +$extra rows → $((large / 1024)) MiB (float64 growth $((grown / 1024)) MiB)"
if [ $((large - small)) -gt $((grown * 13 / 10)) ]; then
  echo "FAIL: the peak grew by $(((large - small) / 1024)) MiB, more than 1.3 × the float64 embedding's growth"
  exit 1
fi
# The two runs measure the same input with the same layers: their ESS is identical.
$PY - "$tmp/out-small.h5" "$tmp/out-large.h5" <<'PYEOF' || exit 1
import sys
import h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
n = 0
for name in a["layers"]:
    for ds in ("tolerance_ess", "entropy_ess"):
        x, y = a["layers"][name][ds][()], b["layers"][name][ds][()]
        assert np.array_equal(x, y), (name, ds)
        n += 1
print(f"{n} ESS datasets identical")
PYEOF
