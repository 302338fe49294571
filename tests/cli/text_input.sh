#!/usr/bin/env bash
# ess analyze --text end to end: a tiny checkpoint with a tokenizer.json (data/tokenizers/tiny-sp)
# gives exactly the ESS of `analyze --tokens` on the ids `ess tokenize` prints (one row, and rows
# of --max-len); inspect names the tokenizer; bad tokenizers, bad text and bad options exit 3 / 2
# with the file named and nothing written.
set -uo pipefail
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ck="$tmp/ckpt"
cp -r "$root/data/checkpoints/tiny-llama" "$ck"
cp "$root/data/tokenizers/tiny-sp/tokenizer.json" "$root/data/tokenizers/tiny-sp/tokenizer_config.json" "$ck/"
printf 'the best of times, the worst of times.\n<|doc|>\nshe sells sea shells! Zebra 42\n' > "$tmp/text.txt"

same_ess() {  # same_ess A.h5 B.h5 LABEL
  $PY - "$1" "$2" <<'PYEOF' && echo "ok: $3" || { echo "FAIL: $3"; fail=1; }
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
assert sorted(a["layers"]) == sorted(b["layers"])
for n in a["layers"]:
    for k in ("tolerance_ess", "entropy_ess", "tss"):
        assert np.array_equal(a["layers"][n][k][...], b["layers"][n][k][...]), (n, k)
PYEOF
}

for maxlen in "" 8; do
  opt=(); [ -n "$maxlen" ] && opt=(--max-len "$maxlen")
  "$ESS" tokenize "$ck" --text "$tmp/text.txt" "${opt[@]}" -q > "$tmp/ids$maxlen.txt" || { echo "FAIL: tokenize"; fail=1; }
  "$ESS" analyze "$ck" --text "$tmp/text.txt" "${opt[@]}" -o "$tmp/text$maxlen.h5" --quiet > "$tmp/out" || { echo "FAIL: analyze --text"; fail=1; }
  "$ESS" analyze "$ck" --tokens "$tmp/ids$maxlen.txt" -o "$tmp/ids$maxlen.h5" --quiet > /dev/null || { echo "FAIL: analyze --tokens"; fail=1; }
  same_ess "$tmp/text$maxlen.h5" "$tmp/ids$maxlen.h5" "--text ${opt[*]} = --tokens of the ids ess tokenize prints"
done
# One row: <s> doc1 </s> <s> doc2 (tiny-sp: add_bos_token, eos </s>); --max-len 8: whole rows only.
$PY - "$tmp/ids.txt" "$tmp/ids8.txt" "$tmp/text.h5" <<'PYEOF' && echo "ok: BOS per document, EOS between, rows" || { echo "FAIL: layout"; fail=1; }
import sys, h5py
one = [list(map(int, l.split())) for l in open(sys.argv[1])]
rows = [list(map(int, l.split())) for l in open(sys.argv[2])]
assert len(one) == 1 and one[0][0] == 1 and one[0].count(1) == 2 and one[0].count(2) == 1, one
assert one[0][one[0].index(2) + 1] == 1  # </s> then <s>
assert len(rows) == len(one[0]) // 8 and all(len(r) == 8 for r in rows)
assert sum(rows, []) == one[0][:8 * len(rows)]
desc = h5py.File(sys.argv[3]).attrs["input"]
assert desc.startswith("text ") and "2 document(s)" in desc and "</s> (2)" in desc, desc
PYEOF
# (to a file first: `| grep -q` may close the pipe before ess has written everything: SIGPIPE)
"$ESS" inspect "$ck" > "$tmp/inspect_ck" && grep -q "tokenizer.json: BPE, 80 tokens" "$tmp/inspect_ck" \
  && echo "ok: inspect names the tokenizer" || { echo "FAIL: inspect"; fail=1; }

bad() {  # bad NAME EXPECTED_RC PATTERN CKPT ARGS...
  local name=$1 want=$2 pattern=$3 dir=$4
  shift 4
  rm -f "$tmp/bad.h5"
  "$ESS" analyze "$dir" "$@" -o "$tmp/bad.h5" --quiet > /dev/null 2> "$tmp/err"
  local rc=$?
  if [ $rc = "$want" ] && grep -q -- "$pattern" "$tmp/err" && [ ! -e "$tmp/bad.h5" ]; then
    echo "ok: $name: $(head -c 160 "$tmp/err")"
  else
    echo "FAIL: $name (exit $rc)"; cat "$tmp/err"; fail=1
  fi
}
printf 'ok\n\xc3\x28 broken' > "$tmp/bad.txt"
bad "invalid UTF-8" 3 "bad.txt: not valid UTF-8: byte 3" "$ck" --text "$tmp/bad.txt"
: > "$tmp/empty.txt"
bad "empty text" 3 "no text" "$ck" --text "$tmp/empty.txt"
bad "text from a device" 3 "text file is not a regular file (it is a character device)" "$ck" --text /dev/zero
bad "--max-len without --text" 2 "goes with --text" "$ck" --tokens "$tmp/ids.txt" --max-len 4
bad "--max-len above the token count" 3 "fewer than --max-len" "$ck" --text "$tmp/text.txt" --max-len 100000
bad "two inputs" 2 "exactly one input" "$ck" --text "$tmp/text.txt" --tokens "$tmp/ids.txt"
mkdir -p "$tmp/small" && cp -r "$root/data/checkpoints/mqar-llama/." "$tmp/small/" && cp "$ck"/tokenizer*.json "$tmp/small/"
bad "token id above the model's vocabulary" 3 "outside the model's vocabulary \[0, 64)" "$tmp/small" --text "$tmp/text.txt"
bad "no tokenizer.json" 3 "no tokenizer.json" "$root/data/checkpoints/tiny-llama" --text "$tmp/text.txt"
for comp in 'model.type="WordPiece"|model type .WordPiece. is not supported' \
            'normalizer={"type":"BertNormalizer"}|normalizer .BertNormalizer. is not supported' \
            'pre_tokenizer={"type":"Whitespace"}|pre_tokenizer .Whitespace. is not supported' \
            'post_processor={"type":"Foo"}|post_processor .Foo. is not supported'; do
  edit=${comp%%|*} pattern=${comp#*|}
  rm -rf "$tmp/badtok" && cp -r "$ck" "$tmp/badtok"
  $PY - "$tmp/badtok/tokenizer.json" "$edit" <<'PYEOF'
import json, sys
p, edit = sys.argv[1], sys.argv[2]
t = json.load(open(p))
key, value = edit.split("=", 1)
value = json.loads(value)
if "." in key:
    a, b = key.split(".")
    t[a][b] = value
else:
    t[key] = value
json.dump(t, open(p, "w"))
PYEOF
  bad "unsupported ${edit%%=*}" 3 "badtok/tokenizer.json: $pattern" "$tmp/badtok" --text "$tmp/text.txt"
done
"$ESS" inspect "$tmp/badtok" > "$tmp/inspect" && grep -q "tokenizer.json: not usable for --text: .*post_processor 'Foo'" "$tmp/inspect" \
  && echo "ok: inspect reports an unusable tokenizer.json and still describes the checkpoint" || { echo "FAIL: inspect badtok"; fail=1; }
exit $fail
