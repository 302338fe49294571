#!/usr/bin/env bash
# ess analyze on the shipped tiny checkpoints: per-layer ESS equals the ESS of the independent
# PyTorch reference's operators (tolerance-ESS identical away from ties, entropy within 1e-6); the
# stored predictions (/model) equal the reference's log-softmax, argmax, loss and perplexity, and
# `report` shows them (also per position, and says so for files without /model);
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
  # Each head layer records the head dimension the model ran (head_dim: the value channels sharing
  # one T), derived here from config.json alone; channel layers record none.
  $PY - "$tmp/$name.h5" "$d/config.json" <<'PYEOF' || { echo "FAIL: $name: head_dim"; fail=1; }
import json, sys, h5py
f, cfg = h5py.File(sys.argv[1]), json.load(open(sys.argv[2]))
hidden = cfg.get("hidden_size", cfg.get("n_embd"))
heads = cfg.get("num_attention_heads", cfg.get("n_head"))
for n, g in f["layers"].items():
    fam, kind = g.attrs["family"], g.attrs["channel_kind"]
    if kind == "channel":
        assert "head_dim" not in g.attrs, (n, fam)
        continue
    if fam == "softmax_attention":
        want = cfg.get("head_dim") or hidden // heads
    elif fam == "mamba2" and "mamba_n_heads" in cfg:  # Falcon-H1's Mamba2 mixer
        P = cfg.get("mamba_d_head", "auto")
        width = cfg.get("mamba_d_ssm") or int(cfg.get("mamba_expand", 2) * hidden)
        want = width // cfg["mamba_n_heads"] if P == "auto" else P
    elif fam == "mamba2":
        want = cfg["head_dim"]
    elif fam == "gla":
        want = int(cfg.get("expand_v", 1.0) * hidden) // cfg.get("num_heads", 4)
    else:
        raise AssertionError(f"{n}: no expected head_dim for family {fam}")
    assert g.attrs["head_dim"] == want, (n, fam, g.attrs["head_dim"], want)
print(sys.argv[1].split("/")[-1], "head_dim as the config says")
PYEOF
  # Predictions (/model) against the PyTorch reference's logits (expected.h5, float64): log-softmax
  # at the next token, argmax, loss = −mean over every scored position, perplexity = exp(loss).
  $PY - "$tmp/$name.h5" "$d/expected.h5" <<'PYEOF' || { echo "FAIL: $name predictions differ from the reference"; fail=1; }
import math, sys, h5py, numpy as np
a, e = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
g, ids, logits = a["model"], e["tokens"][...], e["logits"][...]
B, L = ids.shape
m = logits.max(-1, keepdims=True)
lsm = (logits - m) - np.log(np.exp(logits - m).sum(-1, keepdims=True))
ref = np.take_along_axis(lsm[:, :-1, :], ids[:, 1:, None], 2)[..., 0]
lp = g["logprobs"][...]
assert g["input_ids"].dtype == np.int32 and g["argmax"].dtype == np.int32 and lp.dtype == np.float64
assert np.array_equal(g["input_ids"][...], ids)
assert np.array_equal(g["argmax"][...], lsm.argmax(-1)), "argmax"
assert np.isnan(lp[:, -1]).all(), "last position must be NaN"
err = np.abs(lp[:, :-1] - ref).max()
assert err <= 1e-9, f"logprobs differ by {err}"
loss = -ref.mean()
assert abs(g.attrs["loss"] - loss) <= 1e-12 * loss, (g.attrs["loss"], loss)
assert abs(g.attrs["perplexity"] - math.exp(loss)) <= 1e-12 * math.exp(loss)
assert g.attrs["scored_tokens"] == B * (L - 1) and g.attrs["vocab_size"] == logits.shape[-1]
print(sys.argv[1].split("/")[-1], f"predictions match the reference (logprobs to {err:.1e}, loss {loss:.4f})")
PYEOF
  grep -q "^predictions: loss [0-9.]* nats/token, perplexity" "$tmp/$name.out" || { echo "FAIL: $name: analyze prints no loss"; fail=1; }
done
grep -q "MambaForCausalLM" "$tmp/tiny-mamba.out" || { echo "FAIL: summary"; fail=1; }

# report: the loss and perplexity the file holds (text, markdown, json); --per-position pairs block
# index i with −log p(token i | tokens < i) and each layer's mean ESS_i.
r=$tmp/tiny-llama.h5
"$ESS" report "$r" > "$tmp/report.txt" && grep -q "^predictions: loss [0-9.]* nats/token, perplexity [0-9.]*, next-token accuracy" "$tmp/report.txt" \
  && "$ESS" report "$r" -f markdown | grep -q '^\*\*Predictions\*\*: loss' \
  && "$ESS" report "$r" --per-position > "$tmp/pp.txt" && grep -q "#1 = model.layers.1.self_attn" "$tmp/pp.txt" \
  && "$ESS" report "$r" -f json > "$tmp/report.json" && "$ESS" report "$r" --per-position --metric entropy -f json > "$tmp/pp.json" \
  && $PY - "$r" "$tmp/report.json" "$tmp/pp.json" <<'PYEOF' && echo "ok: report shows the predictions and per-position loss" || { echo "FAIL: report predictions"; fail=1; }
import json, math, sys, h5py, numpy as np
f = h5py.File(sys.argv[1]); g = f["model"]
rep, pp = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
lp, ids, am = g["logprobs"][...], g["input_ids"][...], g["argmax"][...]
p = rep["predictions"]
assert math.isclose(p["loss"], g.attrs["loss"], rel_tol=1e-15) and math.isclose(p["perplexity"], g.attrs["perplexity"], rel_tol=1e-15)
assert p["scored_tokens"] == lp.shape[0] * (lp.shape[1] - 1)
assert math.isclose(p["next_token_accuracy"], (am[:, :-1] == ids[:, 1:]).mean(), rel_tol=1e-15)
assert pp["predictions"] == p and pp["metric"] == "entropy"
names = pp["layers"]
assert names == sorted(f["layers"], key=lambda n: f["layers"][n].attrs["layer_index"])
rows = pp["positions"]
idx = f["layers"][names[0]]["indices"][...]
assert [r["i"] for r in rows] == list(idx)
for r in rows:
    i = r["i"]
    assert math.isclose(r["loss"], -lp[:, i - 1].mean(), rel_tol=1e-13), (i, r["loss"])
    assert math.isclose(r["next_token_accuracy"], (am[:, i - 1] == ids[:, i]).mean())
    for n, v in zip(names, r["ess"]):
        lg = f["layers"][n]
        k = list(lg["indices"][...]).index(i)
        assert math.isclose(v, lg["entropy_ess"][:, :, k].mean(), rel_tol=1e-13), (n, i)
PYEOF
# A results file without /model (ess compute, or written before results format 1.1) still reads:
# report says there are no predictions; --per-position gives ESS with null loss.
$PY -c "import h5py,sys; f=h5py.File(sys.argv[1],'a'); del f['model']; f.attrs['format_version']=[1,0]" "$r"
"$ESS" report "$r" > "$tmp/old.txt" && grep -q "^predictions: none (no /model group" "$tmp/old.txt" \
  && "$ESS" report "$r" -f json | $PY -c "import json,sys; assert json.load(sys.stdin)['predictions'] is None" \
  && "$ESS" report "$r" --per-position -f json | $PY -c "import json,sys; d=json.load(sys.stdin); assert d['predictions'] is None and all(r['loss'] is None and len(r['ess']) == 2 for r in d['positions'])" \
  && echo "ok: results without /model: report says so" || { echo "FAIL: results without /model"; cat "$tmp/old.txt"; fail=1; }
"$ESS" report "$r" --metric entropy >/dev/null 2>&1; [ $? = 2 ] || { echo "FAIL: --metric without --per-position must be a usage error"; fail=1; }

# MQAR: accuracy reported and stored.
"$ESS" analyze "$root/data/checkpoints/tiny-mamba2" --mqar kv=4,len=32,n=2,seed=1 -o "$tmp/mqar.h5" --quiet > "$tmp/mqar.out" \
  && grep -q "MQAR accuracy" "$tmp/mqar.out" && $PY -c "import h5py,sys; a=h5py.File(sys.argv[1]).attrs; assert 0 <= a['mqar_accuracy'] <= 1; assert 'mqar kv=4' in a['input']" "$tmp/mqar.h5" \
  && echo "ok: mqar" || { echo "FAIL: mqar"; fail=1; }


# Progress in a log (stderr not a terminal, as under Slurm or nohup): one line per layer, in order,
# naming it with its channel count; nothing with --quiet.
"$ESS" analyze "$root/data/checkpoints/tiny-llama" --mqar kv=4,len=32,n=2,seed=1 --blocks 4 -o "$tmp/log.h5" \
  >/dev/null 2>"$tmp/log.err" \
  && "$ESS" analyze "$root/data/checkpoints/tiny-llama" --mqar kv=4,len=32,n=2,seed=1 --blocks 4 -o "$tmp/quiet.h5" \
    --quiet >/dev/null 2>"$tmp/quiet.err" \
  && $PY - "$tmp/log.err" "$tmp/quiet.err" <<'PYEOF' && echo "ok: progress lines in a log" || { echo "FAIL: progress in a log"; cat "$tmp/log.err"; fail=1; }
import re, sys
lines = open(sys.argv[1]).read().splitlines()
pattern = r"\[layer (\d)/2\] model\.layers\.(\d)\.self_attn: (\d+) channels measured, [0-9.]+ s elapsed"
got = [re.fullmatch(pattern, l) for l in lines]
assert len(lines) == 2 and all(got), lines
assert [(int(m[1]), int(m[2]), int(m[3])) for m in got] == [(1, 0, 8), (2, 1, 8)], lines  # 2 rows × 4 heads
assert open(sys.argv[2]).read() == "", "--quiet wrote to stderr"
PYEOF
# The shipped model trained on MQAR (tools/reference/train_mqar.py, 100% in training) must recall
# through the C++ forward pass on batches it has never seen: an end-to-end check of the Llama path.
"$ESS" analyze "$root/data/checkpoints/mqar-llama" --mqar kv=8,len=64,n=8,seed=7 -o "$tmp/trained.h5" --quiet >/dev/null \
  && $PY -c "import h5py,sys; acc=h5py.File(sys.argv[1]).attrs['mqar_accuracy']; print('trained MQAR accuracy', acc); assert acc >= 0.95" "$tmp/trained.h5" \
  || { echo "FAIL: trained MQAR model does not recall"; fail=1; }
# Past config.json's max_position_embeddings (64 for mqar-llama) the run goes on with a note on
# stderr (rotary positions extrapolate); at 64 tokens there is none.
for len in 64 80; do
  "$ESS" analyze "$root/data/checkpoints/mqar-llama" --mqar kv=8,len=$len,n=1,seed=7 -o "$tmp/len$len.h5" --quiet \
    >/dev/null 2>"$tmp/err$len" || { echo "FAIL: analyze mqar-llama at $len tokens"; fail=1; }
done
if grep -q "80 tokens per sequence, more than the 64 of config.json's max_position_embeddings" "$tmp/err80" &&
  [ ! -s "$tmp/err64" ]; then
  echo "ok: a note past max_position_embeddings ($(head -c 90 "$tmp/err80")…), none within it"
else
  echo "FAIL: max_position_embeddings note"; cat "$tmp/err64" "$tmp/err80"; fail=1
fi

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
