#!/usr/bin/env bash
# Attention checkpoints as they are published: GPT-2 saved from GPT2Model (no "transformer." prefix,
# as openai-community/gpt2's model.safetensors) with its causal-mask buffers h.{l}.attn.bias /
# masked_bias, and GPT-NeoX (Pythia) with attention.bias (BOOL), attention.masked_bias and
# attention.rotary_emb.inv_freq buffers. The buffers are not weights: `ess inspect` lists them as not
# declared, and `ess analyze` gives exactly the ESS of the same checkpoint without them.
set -uo pipefail
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# add_buffers DIR ARCH: appends the upstream buffers to DIR/model.safetensors (hand-written safetensors).
add_buffers() {
  $PY - "$1" "$2" <<'PYEOF'
import json, struct, sys
import numpy as np
d, arch = sys.argv[1], sys.argv[2]
p = d + "/model.safetensors"
raw = open(p, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header, data = json.loads(raw[8:8 + n]), bytearray(raw[8 + n:])
cfg = json.load(open(d + "/config.json"))
def add(name, arr, dtype):
    b = arr.tobytes()
    header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [len(data), len(data) + len(b)]}
    data.extend(b)
if arch == "gpt2":
    P = cfg["n_positions"]
    for l in range(cfg["n_layer"]):
        add(f"h.{l}.attn.bias", np.tril(np.ones((1, 1, P, P), np.float32)), "F32")
        add(f"h.{l}.attn.masked_bias", np.array(-1e4, np.float32), "F32")
else:
    P, hd = cfg["max_position_embeddings"], cfg["hidden_size"] // cfg["num_attention_heads"]
    r = int(hd * cfg["rotary_pct"])
    for l in range(cfg["num_hidden_layers"]):
        p_ = f"gpt_neox.layers.{l}.attention."
        add(p_ + "bias", np.tril(np.ones((1, 1, 64, 64), np.uint8)), "BOOL")  # (P shortened: size only)
        add(p_ + "masked_bias", np.array(-1e9, np.float32), "F32")
        add(p_ + "rotary_emb.inv_freq", (1.0 / 10000 ** (np.arange(0, r, 2) / r)).astype(np.float32), "F32")
s = json.dumps(header).encode()
s += b" " * ((8 - len(s) % 8) % 8)
open(p, "wb").write(struct.pack("<Q", len(s)) + s + bytes(data))
PYEOF
}
same_ess() {  # same_ess A.h5 B.h5
  $PY - "$1" "$2" <<'PYEOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
assert sorted(a["layers"]) == sorted(b["layers"]) and len(a["layers"]) == 2
for n in a["layers"]:
    for k in ("tolerance_ess", "entropy_ess", "tss"):
        assert np.array_equal(a["layers"][n][k][...], b["layers"][n][k][...]), (n, k)
PYEOF
}
tok="$root/data/checkpoints/tiny-gpt2/tokens.txt"
$PY "$root/tools/reference/make_checkpoints.py" "$tmp/gpt2" --arch gpt2 --gpt2-names gpt2model >/dev/null
cp -r "$root/data/checkpoints/tiny-gpt-neox" "$tmp/neox"
for arch in gpt2 neox; do
  d="$tmp/$arch"
  "$ESS" analyze "$d" --tokens "$tok" -o "$tmp/$arch-plain.h5" --quiet > /dev/null || { echo "FAIL: $arch analyze"; fail=1; continue; }
  add_buffers "$d" "$arch" || { echo "FAIL: $arch buffers"; fail=1; continue; }
  "$ESS" inspect "$d" > "$tmp/$arch-inspect.txt" || { echo "FAIL: $arch inspect"; fail=1; }
  want=$([ $arch = gpt2 ] && echo 4 || echo 6)
  if grep -q "; $want checkpoint tensor(s) not declared" "$tmp/$arch-inspect.txt" \
    && [ "$(grep -c "model.safetensors  not declared$" "$tmp/$arch-inspect.txt")" = "$want" ]; then
    echo "ok: $arch: inspect lists the $want buffers as not declared"
  else
    echo "FAIL: $arch inspect"; cat "$tmp/$arch-inspect.txt"; fail=1
  fi
  "$ESS" analyze "$d" --tokens "$tok" -o "$tmp/$arch-buffers.h5" --quiet > /dev/null \
    && same_ess "$tmp/$arch-plain.h5" "$tmp/$arch-buffers.h5" && echo "ok: $arch: same ESS with the buffers" \
    || { echo "FAIL: $arch with buffers"; fail=1; }
done
exit $fail
