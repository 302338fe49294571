#!/usr/bin/env bash
# diagnose / compress / plot on results made from the demo operators: JSON shapes, verdicts,
# tails against an independent NumPy computation, SVG panels, and bad input.
set -euo pipefail
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ESS" compute "$root/data/demo/ops.h5" -o "$tmp/r.h5" --keep-sigma 24 --quiet >/dev/null
"$ESS" compute "$root/data/demo/ops.h5" -o "$tmp/nosigma.h5" --quiet >/dev/null

"$ESS" diagnose "$tmp/r.h5" --format json > "$tmp/d.json"
"$ESS" compress "$tmp/r.h5" --state 2,4,8,16 --format json > "$tmp/c.json"
$PY - "$tmp/d.json" "$tmp/c.json" "$tmp/r.h5" "$root/notebooks" <<'PYEOF'
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[4])
import esslib
d, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
layers = esslib.load_layers(sys.argv[3])
assert [l["name"] for l in d["layers"]] == [l["name"] for l in layers]
for ld, L in zip(d["layers"], layers):
    assert set(ld) >= {"name", "layer_index", "family", "tss", "utilization", "verdict", "channels"}, ld
    assert set(ld["channels"]) == {"saturated", "healthy", "collapsed", "dead"}
    cls = esslib.classify(L)
    for k in ld["channels"]:
        assert ld["channels"][k] == int((cls == k).sum()), (L["name"], k)
    u = esslib.channel_utilization(L)[cls != "dead"]
    assert abs(ld["utilization"] - (u.mean() if len(u) else 0)) < 1e-6
verdicts = {l["name"]: l["verdict"] for l in d["layers"]}
assert verdicts["layers.0.mixer"] == "saturated" and verdicts["layers.3.mixer"] == "collapsed", verdicts
assert next(l for l in d["layers"] if l["name"] == "layers.3.mixer")["channels"]["dead"] == 4
for lc, L in zip(c["layers"], layers):
    assert set(lc) >= {"name", "layer_index", "targets", "recommended_state"}
    ref = {n: (m, x) for n, m, x in esslib.tails(L, [2, 4, 8, 16])}
    for t in lc["targets"]:
        assert set(t) == {"state", "mean_tail", "max_tail", "frac_exceeding"}
        m, x = ref[t["state"]]
        assert abs(t["mean_tail"] - m) <= 1e-6 * max(m, 1e-30) + 1e-15, (L["name"], t, m)
        assert abs(t["max_tail"] - x) <= 1e-6 * max(x, 1e-30) + 1e-15
        frac = float((L["tolerance_ess"] > t["state"]).mean())
        assert abs(t["frac_exceeding"] - frac) < 1e-9
print("diagnose/compress JSON agree with the independent NumPy computation")
PYEOF

"$ESS" plot "$tmp/r.h5" -o "$tmp/fig.svg" >/dev/null
for needle in "Utilization per layer" "mean ESS profile" "ESS per channel and block" "block index i" "TSS_i" "min(TSS_i, i, L−i)" "layers.3.mixer"; do
  grep -qF "$needle" "$tmp/fig.svg" || { echo "FAIL: SVG lacks '$needle'"; exit 1; }
done
$PY -c "import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])" "$tmp/fig.svg"
echo "ok: plot writes a well-formed SVG with every panel"

check() {  # check CODE PATTERN command...
  local code=$1 pattern=$2; shift 2
  set +e; "$@" >/dev/null 2>"$tmp/err"; local got=$?; set -e
  if [ "$got" != "$code" ] || ! grep -q -- "$pattern" "$tmp/err"; then
    echo "FAIL ($got, want $code): $*"; cat "$tmp/err"; exit 1
  fi
  echo "ok: exit $code: $(head -c 160 "$tmp/err")"
}
check 3 "keep-sigma" "$ESS" compress "$tmp/nosigma.h5" --state 4
check 3 "K = 24" "$ESS" compress "$tmp/r.h5" --state 64
check 2 "positive" "$ESS" compress "$tmp/r.h5" --state 0
check 2 "positive" "$ESS" compress "$tmp/r.h5" --state 4,-2
check 2 "bad --state" "$ESS" compress "$tmp/r.h5" --state four
check 2 "unknown metric" "$ESS" diagnose "$tmp/r.h5" --metric rank
check 2 "collapsed" "$ESS" diagnose "$tmp/r.h5" --collapsed 0.95
check 2 "unknown metric" "$ESS" plot "$tmp/r.h5" -o "$tmp/bad.svg" --metric rank
check 3 "no such file" "$ESS" plot "$tmp/absent.h5" -o "$tmp/bad.svg"
check 3 "does not exist" "$ESS" plot "$tmp/r.h5" -o "$tmp/nodir/x.svg"
[ ! -e "$tmp/bad.svg" ] || { echo "FAIL: half-written SVG left"; exit 1; }
ls "$tmp" | grep -q tmp && { echo "FAIL: temporary file left"; exit 1; }
echo "diagnose/compress/plot: ok"
