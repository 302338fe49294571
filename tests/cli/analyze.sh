#!/usr/bin/env bash
# ess analyze on the shipped tiny checkpoints: per-layer ESS equals the ESS of the independent
# PyTorch reference's operators (tolerance-ESS identical away from ties, entropy within 1e-6);
# bad checkpoints and tokens give exit code 3 and no output.
set -uo pipefail
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for d in "$root"/data/checkpoints/tiny-*; do
  name=$(basename "$d")
  "$ESS" analyze "$d" --tokens "$d/tokens.txt" -o "$tmp/$name.h5" --quiet --keep-sigma 8 > "$tmp/$name.out" || { echo "FAIL: analyze $name"; fail=1; continue; }
  $PY "$root/tools/python/ess_reference.py" "$d/expected.h5" -o "$tmp/$name.ref.h5" || { echo "FAIL: reference $name"; fail=1; continue; }
  $PY - "$tmp/$name.h5" "$tmp/$name.ref.h5" <<'PYEOF' || { echo "FAIL: $name differs"; fail=1; }
import sys, h5py, numpy as np
a, r = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
assert sorted(a["layers"]) == sorted(r["layers"]), (list(a["layers"]), list(r["layers"]))
for n in r["layers"]:
    ga, gr = a["layers"][n], r["layers"][n]
    tie = gr["threshold_margin"][...] < 1e-6
    bad = (ga["tolerance_ess"][...] != gr["tolerance_ess"][...]) & ~tie
    ea, er = ga["entropy_ess"][...], gr["entropy_ess"][...]
    rel = np.abs(ea - er) / np.maximum(er, 1e-300)
    assert not bad.any(), (n, int(bad.sum()))
    assert rel.max() <= 1e-6, (n, rel.max())
    assert np.array_equal(ga["tss"][...], gr["tss"][...]), n
print(sys.argv[1].split("/")[-1], "matches the reference")
PYEOF
done
grep -q "MambaForCausalLM" "$tmp/tiny-mamba.out" || { echo "FAIL: summary"; fail=1; }

# MQAR: accuracy reported and stored.
"$ESS" analyze "$root/data/checkpoints/tiny-mamba2" --mqar kv=4,len=32,n=2,seed=1 -o "$tmp/mqar.h5" --quiet > "$tmp/mqar.out" \
  && grep -q "MQAR accuracy" "$tmp/mqar.out" && $PY -c "import h5py,sys; a=h5py.File(sys.argv[1]).attrs; assert 0 <= a['mqar_accuracy'] <= 1; assert 'mqar kv=4' in a['input']" "$tmp/mqar.h5" \
  && echo "ok: mqar" || { echo "FAIL: mqar"; fail=1; }

# The shipped model trained on MQAR (tools/reference/train_mqar.py, 100% in training) must recall
# through the C++ forward pass on batches it has never seen: an end-to-end check of the Llama path.
"$ESS" analyze "$root/data/checkpoints/mqar-llama" --mqar kv=8,len=64,n=8,seed=7 -o "$tmp/trained.h5" --quiet >/dev/null \
  && $PY -c "import h5py,sys; acc=h5py.File(sys.argv[1]).attrs['mqar_accuracy']; print('trained MQAR accuracy', acc); assert acc >= 0.95" "$tmp/trained.h5" \
  || { echo "FAIL: trained MQAR model does not recall"; fail=1; }

# Bad inputs: exit 3, file named, nothing written.
bad() {  # bad NAME PATTERN python-mutation
  local name=$1 pattern=$2 code=$3
  rm -rf "$tmp/bad"; cp -r "$root/data/checkpoints/tiny-mamba" "$tmp/bad"
  $PY - "$tmp/bad" <<<"$code"
  "$ESS" analyze "$tmp/bad" --tokens "$tmp/bad/tokens.txt" -o "$tmp/out.h5" --quiet >/dev/null 2>"$tmp/err"
  local rc=$?
  if [ $rc = 3 ] && grep -q -- "$pattern" "$tmp/err" && [ ! -e "$tmp/out.h5" ]; then
    echo "ok: $name: $(head -c 170 "$tmp/err")"
  else
    echo "FAIL: $name (exit $rc)"; cat "$tmp/err"; fail=1
  fi
}
read -r -d '' HDR <<'PYEOF'
import sys, json, struct
d = sys.argv[1]; p = d + "/model.safetensors"
raw = open(p, "rb").read(); n = struct.unpack("<Q", raw[:8])[0]; h = json.loads(raw[8:8 + n]); buf = raw[8 + n:]
def write(h, buf, n_override=None):
    s = json.dumps(h).encode(); s += b" " * ((8 - len(s) % 8) % 8)
    open(p, "wb").write(struct.pack("<Q", n_override if n_override is not None else len(s)) + s + buf)
PYEOF
bad truncated "model.safetensors" "$HDR
open(p, 'wb').write(raw[:len(raw) - 64])"
bad header_too_long "header length" "$HDR
open(p, 'wb').write(struct.pack('<Q', 10**9) + raw[8:])"
bad overlap "overlaps" "$HDR
names = sorted((k for k in h if k != '__metadata__'), key=lambda k: h[k]['data_offsets'][0])
a, b = names[0], names[1]
h[b]['data_offsets'] = [h[b]['data_offsets'][0] - 4, h[b]['data_offsets'][1] - 4]
write(h, buf)"
bad out_of_bounds "beyond the data buffer" "$HDR
names = sorted((k for k in h if k != '__metadata__'), key=lambda k: h[k]['data_offsets'][0])
h[names[-1]]['data_offsets'][1] += 4096
write(h, buf)"
bad dtype_bytes "needs" "$HDR
k = next(k for k in h if k.endswith('mixer.D'))
h[k]['dtype'] = 'F64'
write(h, buf)"
bad missing_tensor "A_log" "$HDR
import re
k = 'backbone.layers.1.mixer.A_log'
b0, b1 = h[k]['data_offsets']; del h[k]
size = b1 - b0
for v in h.values():
    if isinstance(v, dict) and 'data_offsets' in v and v['data_offsets'][0] >= b1:
        v['data_offsets'] = [v['data_offsets'][0] - size, v['data_offsets'][1] - size]
write(h, buf[:b0] + buf[b1:])"
bad wrong_shape "config.json implies" "
import json, sys; p = sys.argv[1] + '/config.json'; c = json.load(open(p)); c['hidden_size'] += 8; json.dump(c, open(p, 'w'))"
bad token_range "outside the vocabulary" "
import sys; open(sys.argv[1] + '/tokens.txt', 'w').write('1 2 3 4\n5 6 7 100000\n')"
bad ragged "same length" "
import sys; open(sys.argv[1] + '/tokens.txt', 'w').write('1 2 3 4\n5 6 7\n')"
bad unsupported "not supported" "
import json, sys; p = sys.argv[1] + '/config.json'; c = json.load(open(p)); c['architectures'] = ['RwkvForCausalLM']; json.dump(c, open(p, 'w'))"
exit $fail
