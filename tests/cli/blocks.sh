#!/usr/bin/env bash
# Blocks where users look (docs/analysis.md, "Choosing blocks"): --indices lists, --blocks N and
# --at-tokens/--window measure exactly the blocks they name (index lists computed here
# independently) with the same values as a run over every block; the choice is recorded in the
# block_selection attribute; report/diagnose --interior aggregate exactly the blocks with
# min(i, L−i) ≥ TSS_i (aggregates recomputed here from the datasets); bad selections are usage
# errors (exit 2) that write nothing.
set -uo pipefail
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
$PY -c "import h5py, numpy" 2>/dev/null || { echo "no h5py/numpy: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
$PY "$root/tests/cli/make_random_ops.py" "$tmp/ops.h5" 3 || exit 1
"$ESS" compute "$tmp/ops.h5" -o "$tmp/all.h5" --quiet --threads 1 > /dev/null || { echo "FAIL: compute all"; exit 1; }

# Every layer of SEL holds exactly the blocks EXPECTED (a Python expression in L) with the values
# the all-blocks run has at those i, and block_selection = WHAT.
same_as_all() {  # SEL EXPECTED WHAT
  $PY - "$tmp/all.h5" "$1" "$2" "$3" <<'PYEOF'
import math, sys, h5py, numpy as np
full, sel = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
expected, what = sys.argv[3], sys.argv[4]
assert sel.attrs["block_selection"] == what, (sel.attrs["block_selection"], what)
for n in full["layers"]:
    gf, gs = full["layers"][n], sel["layers"][n]
    L = int(gf.attrs["seq_len"])
    want = eval(expected, {"L": L, "math": math})
    got = list(gs["indices"][...])
    assert got == want, (n, got, want)
    pos = [list(gf["indices"][...]).index(i) for i in want]
    for ds in ("tolerance_ess", "entropy_ess", "status"):
        a, b = gf[ds][...][..., pos], gs[ds][...]
        assert np.array_equal(a, b) if ds != "entropy_ess" else np.allclose(a, b, rtol=1e-12, atol=0), (n, ds)
    assert np.array_equal(gf["tss"][...][pos], gs["tss"][...]), n
print("ok:", what)
PYEOF
}

# Explicit list: sorted, duplicates dropped, negatives count from L.
"$ESS" compute "$tmp/ops.h5" -o "$tmp/list.h5" --quiet --threads 1 --indices 9,2,-1,2 > /dev/null || { echo "FAIL: --indices list"; fail=1; }
same_as_all "$tmp/list.h5" "sorted({2, 9, L - 1})" "indices=9,2,-1,2" || { echo "FAIL: --indices 9,2,-1,2"; fail=1; }
# --blocks N: i_j = round((j + 1)·L/(N + 1)) (half up), j < N.
"$ESS" compute "$tmp/ops.h5" -o "$tmp/blocks.h5" --quiet --threads 1 --blocks 4 > /dev/null || { echo "FAIL: --blocks"; fail=1; }
same_as_all "$tmp/blocks.h5" "[math.floor((j + 1) * L / 5 + 0.5) for j in range(4)]" "blocks=4" || { echo "FAIL: --blocks 4"; fail=1; }
# More blocks than there are: every block once.
"$ESS" compute "$tmp/ops.h5" -o "$tmp/many.h5" --quiet --threads 1 --blocks 1000 > /dev/null || { echo "FAIL: --blocks 1000"; fail=1; }
same_as_all "$tmp/many.h5" "list(range(1, L))" "blocks=1000" || { echo "FAIL: --blocks 1000"; fail=1; }

# Bad selections: usage errors, nothing written.
for args in "--indices 0,3" "--indices 3,99" "--indices 3,x" "--blocks 2 --indices 1:4" "--blocks -1" \
  "--at-tokens 5" "--window 2" "--indices 1:3 --at-tokens 5"; do
  # shellcheck disable=SC2086
  "$ESS" compute "$tmp/ops.h5" -o "$tmp/bad.h5" --quiet $args > /dev/null 2> "$tmp/err"
  rc=$?
  if [ "$rc" != 2 ] || [ -e "$tmp/bad.h5" ]; then
    echo "FAIL: compute $args: exit $rc (want 2), output $(ls "$tmp/bad.h5" 2>/dev/null)"
    cat "$tmp/err"
    fail=1
  fi
  # --at-tokens needs the input tokens, which an operator file does not store: the error says so.
  if [[ "$args" == *--at-tokens* ]] && ! grep -q "operator file stores no input tokens" "$tmp/err"; then
    echo "FAIL: compute $args: the error does not say that operator files store no tokens:"
    cat "$tmp/err"
    fail=1
  fi
done

# --at-tokens on analyze: blocks within --window of every position holding one of the ids (union
# over the batch), compared with an all-blocks analyze.
ck="$root/data/checkpoints/tiny-mamba"
"$ESS" analyze "$ck" --tokens "$ck/tokens.txt" -o "$tmp/an_all.h5" --quiet --threads 1 > /dev/null || { echo "FAIL: analyze all"; fail=1; }
ids=$($PY -c "
import collections, sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
c = collections.Counter(t for r in rows for t in r[1:-1])
print(','.join(str(t) for t, _ in c.most_common()[-2:]))" "$ck/tokens.txt")
"$ESS" analyze "$ck" --tokens "$ck/tokens.txt" -o "$tmp/an_at.h5" --quiet --threads 1 --at-tokens "$ids" --window 2 \
  > /dev/null || { echo "FAIL: analyze --at-tokens $ids"; fail=1; }
$PY - "$tmp/an_all.h5" "$tmp/an_at.h5" "$ck/tokens.txt" "$ids" <<'PYEOF' || { echo "FAIL: --at-tokens blocks"; fail=1; }
import sys, h5py, numpy as np
full, sel = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
rows = [list(map(int, l.split())) for l in open(sys.argv[3]) if l.strip()]
ids = {int(t) for t in sys.argv[4].split(",")}
L = len(rows[0])
P = {p for r in rows for p, t in enumerate(r) if t in ids}
want = [i for i in range(1, L) if any(abs(i - p) <= 2 for p in P)]
assert sel.attrs["block_selection"] == "at-tokens=%s;window=2" % sys.argv[4], sel.attrs["block_selection"]
for n in full["layers"]:
    gf, gs = full["layers"][n], sel["layers"][n]
    assert list(gs["indices"][...]) == want, (n, list(gs["indices"][...]), want)
    pos = [list(gf["indices"][...]).index(i) for i in want]
    assert np.array_equal(gf["tolerance_ess"][...][..., pos], gs["tolerance_ess"][...]), n
print("ok: at-tokens", sorted(ids), "->", len(want), "blocks")
PYEOF
"$ESS" analyze "$ck" --tokens "$ck/tokens.txt" -o "$tmp/bad.h5" --quiet --at-tokens 999999 > /dev/null 2> "$tmp/err"
rc=$?
[ "$rc" = 2 ] && [ ! -e "$tmp/bad.h5" ] || { echo "FAIL: --at-tokens with no match: exit $rc"; cat "$tmp/err"; fail=1; }

# report / diagnose --interior: aggregates over the blocks with min(i, L−i) ≥ TSS_i only.
for f in all.h5 an_all.h5; do
  "$ESS" report "$tmp/$f" --interior --format json > "$tmp/rep.json" || { echo "FAIL: report --interior $f"; fail=1; }
  "$ESS" diagnose "$tmp/$f" --interior --format json > "$tmp/diag.json" || { echo "FAIL: diagnose --interior $f"; fail=1; }
  "$ESS" report "$tmp/$f" --interior > "$tmp/rep.txt" || fail=1
  grep -c "interior blocks only" "$tmp/rep.txt" > /dev/null || { echo "FAIL: report --interior does not say so"; fail=1; }
  $PY - "$tmp/$f" "$tmp/rep.json" "$tmp/diag.json" <<'PYEOF' || { echo "FAIL: --interior aggregates of $f"; fail=1; }
import json, math, sys, h5py, numpy as np
f = h5py.File(sys.argv[1])
rep, diag = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
assert rep["interior"] is True and diag["interior"] is True
rl = {l["name"]: l for l in rep["layers"]}
dl = {l["name"]: l for l in diag["layers"]}
checked = 0
for n in f["layers"]:
    g = f["layers"][n]
    L, idx, tss = int(g.attrs["seq_len"]), g["indices"][...], g["tss"][...]
    keep = np.minimum(idx, L - idx) >= tss
    name = g.attrs["name"] if "name" in g.attrs else n
    r, d = rl[name], dl[name]
    assert r["blocks"] == int(keep.sum()), (name, r["blocks"], int(keep.sum()))
    if not keep.any():
        continue
    ok = g["status"][...][..., keep] == 0
    for ds, key in (("tolerance_ess", "mean_tolerance_ess"), ("entropy_ess", "mean_entropy_ess")):
        v = np.where(ok, g[ds][...][..., keep].astype(float), np.nan)  # [B, C, I']
        per_channel = np.nanmean(v.transpose(1, 0, 2).reshape(v.shape[1], -1), axis=1)
        want = float(np.mean(per_channel))
        assert math.isclose(r[key], want, rel_tol=1e-12, abs_tol=1e-12), (name, key, r[key], want)
    v = np.where(ok, g["tolerance_ess"][...][..., keep].astype(float), np.nan)
    assert math.isclose(d["mean_ess"], float(np.nanmean(v)), rel_tol=1e-12, abs_tol=1e-12), (name, d["mean_ess"])
    assert d["tss"] == int(tss[keep].max()), (name, d["tss"])
    checked += 1
assert checked > 0
print("ok: --interior aggregates of", checked, "layers of", sys.argv[1].split("/")[-1])
PYEOF
done
exit $fail
