#!/usr/bin/env bash
# The published-shape generator (make_checkpoints.py --published, docs/checkpoints.md "Real shapes"):
# for every published model, the exact config.json with headers only (the data a sparse hole, so
# this takes no time or disk) is a checkpoint `ess inspect` accepts — every declared tensor present
# with the shape config.json implies, nothing undeclared — and holds the model's published
# parameter count. Generating the real weights and running `ess analyze` on them is the manual
# measurement in docs/checkpoints.md (hundreds of MB to GB; not a test).
set -uo pipefail
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
$PY -c "import numpy" 2>/dev/null || { echo "SKIP: numpy missing"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# name, published parameter count (embedding counted once when tied), files (comma-separated)
for spec in "mamba-130m 129135360 model.safetensors" "llama-3.2-1b 1235814400 model.safetensors" \
  "mamba-2.8b 2768345600 model-00001-of-00003.safetensors,model-00002-of-00003.safetensors,model-00003-of-00003.safetensors" \
  "qwen2.5-0.5b 494032768 model.safetensors" "pythia-160m 162322944 model.safetensors" \
  "lfm2-350m 354483968 model.safetensors"; do
  set -- $spec
  name=$1 params=$2 files=$3
  out=$($PY "$root/tools/reference/make_checkpoints.py" "$tmp/$name" --published "$name" --header-only) \
    || { echo "FAIL: $name: generator"; fail=1; continue; }
  want="$($PY -c "print(f'{$params:,} parameters')")"
  case "$out" in *", $want") ;; *) echo "FAIL: $name: $out (expected $want)"; fail=1 ;; esac
  [ "$(cd "$tmp/$name" && ls *.safetensors | tr '\n' ',' | sed 's/,$//')" = "$files" ] \
    || { echo "FAIL: $name: weight files $(ls "$tmp/$name")"; fail=1; }
  "$ESS" inspect "$tmp/$name" > "$tmp/$name.txt" 2>&1 || { echo "FAIL: $name: inspect"; cat "$tmp/$name.txt"; fail=1; continue; }
  if grep -q "0 missing, 0 misshapen, 0 of an unsupported dtype; 0 checkpoint tensor(s) not declared" "$tmp/$name.txt"; then
    echo "ok: $name: $(grep -o "[0-9]* present" "$tmp/$name.txt") tensors as declared, $params parameters"
  else
    grep "architecture" "$tmp/$name.txt"; echo "FAIL: $name: inspect finds problems"; fail=1
  fi
done
exit $fail
