#!/usr/bin/env bash
# ess study on shipped zoo models (data/zoo): the table's aggregates against the results files it
# wrote (h5py), the correlations against scipy.stats on the same table, the bootstrap intervals
# against an independent NumPy percentile bootstrap (Monte Carlo agreement), the figure, --where
# and --reuse, and bad input (exit 2 / 3, nothing written).
set -euo pipefail
ESS=$(realpath "$1")
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
man=$root/data/zoo/manifest.json
[ -f "$man" ] || { echo "SKIP: no zoo manifest ($man)"; exit 77; }
$PY -c "import scipy, h5py, numpy" 2>/dev/null || { echo "SKIP: scipy / h5py / numpy missing"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A list of the zoo's d1 models (kv 4, len 64: quick), each on its MQAR input.
$PY - "$man" "$tmp/list.txt" <<'PYEOF'
import json, os, sys
man = json.load(open(sys.argv[1]))
zoo = os.path.dirname(os.path.abspath(sys.argv[1]))
rows = [m for m in man["models"] if m["difficulty"] == "d1"]
with open(sys.argv[2], "w") as f:
    for m in rows:
        f.write(f"{m['name']} {os.path.join(zoo, m['dir'])} kv={m['kv']},len={m['len']} family={m['family']} seed={m['seed']}\n")
print(len(rows), "models")
PYEOF

"$ESS" study --list "$tmp/list.txt" --n 4 --indices 1:64:3 --threads 1 --quiet \
  --results-dir "$tmp/res" -o "$tmp/study.json" --markdown "$tmp/study.md" --svg "$tmp/study.svg" --bootstrap 1000 \
  >"$tmp/out.txt"
grep -q "correlation with accuracy" "$tmp/out.txt"
grep -q "| predictor | n | Pearson" "$tmp/study.md"
grep -q "<svg" "$tmp/study.svg"
grep -q "Spearman" "$tmp/study.svg"

$PY - "$tmp/study.json" "$tmp/res" <<'PYEOF'
import json, os, sys
import h5py
import numpy as np
import scipy.stats as ss

study = json.load(open(sys.argv[1]))
rows = study["rows"]
assert len(rows) >= 6, len(rows)
# Table entries from the results files (independent reading with h5py).
for r in rows:
    with h5py.File(os.path.join(sys.argv[2], r["name"] + ".h5"), "r") as f:
        assert abs(float(f.attrs["mqar_accuracy"]) - r["accuracy"]) < 1e-15
        tol, ent, util = [], [], []
        for name in sorted(f["layers"], key=lambda n: int(f["layers"][n].attrs["layer_index"])):
            g = f["layers"][name]
            T = g["tolerance_ess"][...].astype(float)  # [B, C, I]
            E = g["entropy_ess"][...]
            att = np.minimum(g["tss"][...], np.minimum(g["indices"][...], int(g.attrs["seq_len"]) - g["indices"][...]))
            tol.append(T.mean(axis=(0, 2)).mean())
            ent.append(E.mean(axis=(0, 2)).mean())
            ok = att > 0
            util.append((T[:, :, ok] / att[ok]).mean(axis=(0, 2)).mean())
        assert abs(np.mean(tol) - r["tolerance_ess"]) < 1e-9 * max(1, np.mean(tol)), (r["name"], np.mean(tol), r["tolerance_ess"])
        assert abs(np.mean(ent) - r["entropy_ess"]) < 1e-9 * max(1, np.mean(ent))
        assert abs(np.mean(util) - r["utilization"]) < 1e-9
        assert abs(r["predictors"]["tolerance_ess/kv"] - np.mean(tol) / r["kv"]) < 1e-9
        assert abs(r["predictors"]["entropy_ess/kv"] - np.mean(ent) / r["kv"]) < 1e-9
# Correlations: scipy on the same table.
rng = np.random.default_rng(0)
checked = 0
for c in study["correlations"]:
    p = c["predictor"]
    xy = [(r["predictors"][p], r["accuracy"]) for r in rows
          if r["accuracy"] is not None and r["predictors"][p] is not None]
    assert c["n"] == len(xy), (p, c["n"], len(xy))
    x, y = np.array(xy).T
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        assert c["pearson"] is None and c["spearman"] is None
        continue
    assert abs(ss.pearsonr(x, y)[0] - c["pearson"]) < 1e-12, (p, ss.pearsonr(x, y)[0], c["pearson"])
    assert abs(ss.spearmanr(x, y)[0] - c["spearman"]) < 1e-12, (p, ss.spearmanr(x, y)[0], c["spearman"])
    # Percentile bootstrap (independent resampling): the interval ends agree within Monte Carlo error.
    n, stats = len(x), []
    for _ in range(4000):
        k = rng.integers(0, n, n)
        if np.ptp(x[k]) > 0 and np.ptp(y[k]) > 0:
            stats.append(ss.spearmanr(x[k], y[k])[0])
    lo, hi = np.percentile(stats, [2.5, 97.5])
    assert abs(lo - c["spearman_ci"][0]) < 0.12 and abs(hi - c["spearman_ci"][1]) < 0.12, (p, lo, hi, c["spearman_ci"])
    assert c["spearman_ci"][0] <= c["spearman_ci"][1], (p, c["spearman_ci"])  # (a percentile interval need not hold the estimate)
    checked += 1
assert checked >= 3, checked
print(f"ok: {len(rows)} rows, {checked} predictors match scipy")
PYEOF

# --reuse reads the results files instead of analyzing: identical table; --where filters by label.
"$ESS" study --list "$tmp/list.txt" --results-dir "$tmp/res" --reuse --bootstrap 1000 \
  -o "$tmp/again.json" --quiet >/dev/null
$PY -c "
import json,sys
a,b=json.load(open('$tmp/study.json')),json.load(open('$tmp/again.json'))
assert [r['accuracy'] for r in a['rows']]==[r['accuracy'] for r in b['rows']]
assert a['correlations']==b['correlations']"
"$ESS" study --list "$tmp/list.txt" --results-dir "$tmp/res" --reuse --where family=sa \
  --format json --bootstrap 10 --quiet | $PY -c "
import json,sys; j=json.load(sys.stdin); assert j['rows'] and all(r['labels']['family']=='sa' for r in j['rows'])"

# Bad input: no models (2), unknown predictor (2), missing manifest (3), a where that matches nothing (3).
set +e
"$ESS" study -o "$tmp/x.json" >/dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: no input should be a usage error"; exit 1; }
"$ESS" study --manifest "$man" --figure-predictors nope -o "$tmp/x.json" >/dev/null 2>&1
[ $? -eq 2 ] || { echo "FAIL: unknown predictor should be a usage error"; exit 1; }
"$ESS" study --manifest "$tmp/none.json" -o "$tmp/x.json" >/dev/null 2>&1
[ $? -eq 3 ] || { echo "FAIL: a missing manifest should be an input error"; exit 1; }
"$ESS" study --manifest "$man" --where family=none -o "$tmp/x.json" >/dev/null 2>&1
[ $? -eq 3 ] || { echo "FAIL: an empty selection should be an input error"; exit 1; }
set -e
[ ! -e "$tmp/x.json" ] || { echo "FAIL: a failed study left an output file"; exit 1; }
echo "study: ok"
