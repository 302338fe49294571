#!/usr/bin/env bash
# ess inspect CKPT shows the architecture's declared weights and their status: every fixture
# fully present with nothing undeclared; a config that disagrees with the tensors lists each
# misshapen / missing tensor (exit 0: inspect describes), while analyze refuses it (exit 3).
set -uo pipefail
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() {  # check DESCRIPTION PATTERN FILE
  if grep -q -- "$2" "$3"; then echo "ok: $1"; else echo "FAIL: $1 (no '$2')"; cat "$3"; fail=1; fi
}

for d in "$root"/data/checkpoints/*/; do
  name=$(basename "$d")
  "$ESS" inspect "$d" > "$tmp/$name.txt" || { echo "FAIL: inspect $name"; fail=1; continue; }
  check "$name: declared weights all present" " 0 missing, 0 misshapen, 0 of an unsupported dtype; 0 checkpoint tensor(s) not declared" "$tmp/$name.txt"
done
check "llama: a per-layer weight with its pattern, shape and count" "q_proj *model.layers.{l}.self_attn.q_proj.weight *\[64, 48\] *ok ×2" "$tmp/tiny-llama.txt"
check "llama: biases off by config" "q_bias .*off ×2" "$tmp/tiny-llama.txt"
check "mamba: tied head optional" "lm_head .*off (tie_word_embeddings" "$tmp/tiny-mamba.txt"

cp -r "$root/data/checkpoints/tiny-mamba" "$tmp/bad"
$PY - "$tmp/bad/config.json" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1])); c["state_size"] = 6; c["use_bias"] = True
json.dump(c, open(sys.argv[1], "w"))
PYEOF
"$ESS" inspect "$tmp/bad" > "$tmp/bad.txt"; rc=$?
[ $rc = 0 ] && echo "ok: inspect describes a bad checkpoint" || { echo "FAIL: inspect exit $rc"; fail=1; }
check "bad: counts" "4 missing, 4 misshapen" "$tmp/bad.txt"
check "bad: misshapen tensor named with the implied shape" "wrong shape: .*model.safetensors: tensor 'backbone.layers.1.mixer.A_log' has shape \[64, 8\], but config.json implies \[64, 6\]" "$tmp/bad.txt"
check "bad: missing bias named with its condition" "missing: .*no tensor 'backbone.layers.0.mixer.out_proj.bias' (config.json implies shape \[32\]; use_bias)" "$tmp/bad.txt"
"$ESS" analyze "$tmp/bad" --tokens "$tmp/bad/tokens.txt" -o "$tmp/out.h5" --quiet 2> "$tmp/err"; rc=$?
[ $rc = 3 ] && [ ! -e "$tmp/out.h5" ] && echo "ok: analyze refuses it: $(cat "$tmp/err")" || { echo "FAIL: analyze exit $rc"; fail=1; }

# An unsupported architecture still lists the tensors.
cp -r "$root/data/checkpoints/tiny-gla" "$tmp/unknown"
$PY -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); c['architectures']=['RwkvForCausalLM']; json.dump(c, open(p,'w'))" "$tmp/unknown/config.json"
"$ESS" inspect "$tmp/unknown" > "$tmp/unknown.txt" || { echo "FAIL: inspect unknown"; fail=1; }
check "unknown architecture: said, tensors still listed" "architecture: .*'RwkvForCausalLM' is not supported" "$tmp/unknown.txt"
check "unknown architecture: tensors" "model.layers.0.attn.q_proj.weight" "$tmp/unknown.txt"
exit $fail
