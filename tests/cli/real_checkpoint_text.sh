#!/usr/bin/env bash
# `ess analyze --text` on a real checkpoint. The conversion of stories15M
# (tools/setup_real_checkpoints.sh) writes its llama2.c vocabulary as a Hugging Face Llama-2
# tokenizer.json (llama2c.Tokenizer.hf_files: merges ranked by the score of the piece they make).
# `ess tokenize` must give exactly the ids of llama2.c's own encoder (SentencePiece BPE by highest
# score; tools/reference/llama2c.py, an independent implementation) and of tokenizers.js on the same
# tokenizer.json, on every published sample's text and prompt and on texts with runs of spaces,
# tabs, newlines, digits, accents, CJK and emoji (byte fallback). And `ess analyze --text` on the
# "bos" sample's raw text must reproduce the published greedy generation
# (tools/reference/check_real_checkpoint.py ess, as tests/cli/real_checkpoint.sh does from token ids).
# Skipped (77) without torch or when npm / the package cannot be had; without Node.js or tokenizers.js
# too, except under CI=true (tests/cli/node_setup.bash).
set -uo pipefail
source "$(dirname "$0")/real_checkpoint_setup.bash" "$1"
$PY - "$spec" "$tmp" <<'PYEOF' || exit 1
import json, sys
spec, out = json.load(open(sys.argv[1])), sys.argv[2]
texts = {f"sample-{s['name']}": s["text"] for s in spec["samples"]}
texts.update({f"prompt-{s['name']}": s["prompt"] for s in spec["samples"] if s["prompt"]})
texts.update({
    "spaces": "  two  spaces,\ttab\n\nand a blank line ",
    "digits": "Tom had 12345 apples and 3.14159 pies in 2024.",
    "unicode": "Ünïcödé façade naïve — “quotes” 日本語 🙂 emoji",
    "apostrophes": "Lily's dog didn't want to go. \"No!\" she said.",
})
for name, text in texts.items():
    with open(f"{out}/{name}.txt", "w", encoding="utf-8") as f:
        f.write(text)
with open(f"{out}/names", "w") as f:
    f.write("\n".join(texts) + "\n")
with open(f"{out}/docs.json", "w", encoding="utf-8") as f:
    json.dump(list(texts.values()), f)
PYEOF
# The same tokenizer.json read by tokenizers.js (@huggingface/tokenizers): the file is one Hugging
# Face's own implementation reads the same way.
# shellcheck source=tests/cli/node_setup.bash
source "$root/tests/cli/node_setup.bash"
(cd "$root/tools/node" && node encode.mjs "$ckpt" "$tmp/docs.json") >"$tmp/js.txt" 2>"$tmp/js.err" ||
  { echo "FAIL: tokenizers.js: $(tail -3 "$tmp/js.err")"; exit 1; }
n=0
while IFS= read -r name; do
  n=$((n + 1))
  f=$tmp/$name.txt
  got=$("$ESS" tokenize "$ckpt" --text "$f" 2>"$tmp/err") || { echo "FAIL: ess tokenize $name: $(cat "$tmp/err")"; fail=1; continue; }
  want=$($PY "$root/tools/reference/llama2c.py" encode "$ckpt/llama2c-tokenizer.bin" "$f") || { fail=1; continue; }
  js=$(sed -n "${n}p" "$tmp/js.txt")
  for ref in "llama2.c's encoder:$want" "tokenizers.js:$js"; do
    if [ "$(echo $got)" != "$(echo ${ref#*:})" ]; then
      echo "FAIL: $name: ess tokenize gives"
      echo "  $(echo $got | head -c 300)"
      echo "${ref%%:*}"
      echo "  $(echo ${ref#*:} | head -c 300)"
      fail=1
    fi
  done
done <"$tmp/names"
echo "ess tokenize = llama2.c's encoder = tokenizers.js on $n texts: $([ $fail = 0 ] && echo yes || echo NO)"
"$ESS" analyze "$ckpt" --text "$tmp/sample-bos.txt" -o "$tmp/bos.h5" --quiet >/dev/null ||
  { echo "FAIL: ess analyze --text on the bos sample"; exit 1; }
$PY "$root/tools/reference/check_real_checkpoint.py" ess "$spec" "$ckpt" bos "$tmp/bos.h5"
[ $? -eq 0 ] || fail=1
exit $fail
