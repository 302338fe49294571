#!/usr/bin/env bash
# docs/findings.md §1, §2 and §3 and the diagnose calibration regenerate from what we ship, with ess alone:
#  - predictors of accuracy (data/findings/study*.json): `ess study` over the zoo's manifest (all
#    models, and per difficulty with --where) gives the stored rows and correlations; every table in
#    docs/findings.md marked <!-- from data/findings/F.json --> quotes F's correlations (3 decimals);
#    the paired-bootstrap differences (compare_predictors.py) recompute to the stored ones;
#  - calibration (data/findings/calibration.json): `ess diagnose` on those results gives the stored
#    verdicts, hence the confusion tables (calibrate.py --results on the regenerated files);
#  - distillation (data/findings/distill.json): for every teacher, `ess analyze` on its zoo checkpoint
#    with the stored MQAR spec gives the stored accuracy and per-layer tolerance-/entropy-ESS, and
#    `ess compress --state ...` the stored tails at every student state; the rank correlations and
#    compress's recommendations (smallest N_s with mean tail ≤ max-error in every layer, and whether
#    that student reaches 95% of the teacher) are recomputed independently from the rows;
#  - state modulation (data/findings/modulation.json): data/zoo/text/eos_tokens.txt holds an EOS
#    exactly where its metadata says (and none in the control rows); `ess analyze` of each text LM on
#    it gives the stored ESS right after the EOS and at the same position in the control rows, and
#    the stored drops and Wilcoxon p-values follow from them.
set -euo pipefail
ESS=$(realpath "$1")
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
fd=$root/data/findings
[ -f "$fd/study.json" ] || [ -f "$fd/distill.json" ] || [ -f "$fd/modulation.json" ] || { echo "SKIP: no findings files"; exit 77; }
$PY -c "import scipy, h5py, numpy" 2>/dev/null || { echo "SKIP: scipy / h5py / numpy missing"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ -f "$fd/study.json" ]; then
  man=$root/data/zoo/manifest.json
  "$ESS" study --manifest "$man" --n 8 --results-dir "$tmp/res" -o "$tmp/study.json" --quiet >/dev/null
  for d in d1 d3; do
    [ -f "$fd/study_$d.json" ] || continue
    "$ESS" study --manifest "$man" --n 8 --where difficulty=$d --results-dir "$tmp/res" --reuse \
      -o "$tmp/study_$d.json" --quiet >/dev/null
  done
  $PY - "$root" "$tmp" <<'PYEOF'
import json, os, re, sys
import numpy as np
root, tmp = sys.argv[1:3]
fd = os.path.join(root, "data", "findings")
for f in sorted(os.listdir(fd)):
    if not re.fullmatch(r"study(_d\d)?\.json", f) or not os.path.exists(os.path.join(tmp, f)):
        continue
    a, b = json.load(open(os.path.join(tmp, f))), json.load(open(os.path.join(fd, f)))
    assert [r["name"] for r in a["rows"]] == [r["name"] for r in b["rows"]], f
    for ra, rb in zip(a["rows"], b["rows"]):
        assert ra["accuracy"] == rb["accuracy"], (f, ra["name"], ra["accuracy"], rb["accuracy"])
        for k, v in rb["predictors"].items():
            assert abs(ra["predictors"][k] - v) <= 1e-9 * max(1, abs(v)), (f, ra["name"], k)
    ca = {c["predictor"]: c for c in a["correlations"]}
    for c in b["correlations"]:
        for k in ("spearman", "pearson", "spearman_ci", "pearson_ci"):
            assert np.allclose(ca[c["predictor"]][k], c[k], rtol=0, atol=1e-9), (f, c["predictor"], k)
    print(f"ok: {f} regenerates ({len(b['rows'])} models)")
# the tables of docs/findings.md quote the stored correlations
doc = open(os.path.join(root, "docs", "findings.md")).read()
marks = re.findall(r"<!-- from data/findings/(study[_a-z0-9]*\.json) -->\n((?:\|.*\n)+)", doc)
assert marks, "docs/findings.md: no table marked <!-- from data/findings/study*.json -->"
num = r"([-−0-9.]+)"
for f, table in marks:
    corr = {c["predictor"]: c for c in json.load(open(os.path.join(fd, f)))["correlations"]}
    n = 0
    for line in table.splitlines():
        m = re.match(rf"\| `([a-z_/]+)` \| {num} \| \[{num}, {num}\] \| {num} \| \[{num}, {num}\] \|", line)
        if not m:
            continue
        c = corr[m.group(1)]
        want = [c["spearman"], *c["spearman_ci"], c["pearson"], *c["pearson_ci"]]
        got = [float(x.replace("−", "-")) for x in m.groups()[1:]]
        assert all(abs(g - w) <= 5e-4 + 1e-12 for g, w in zip(got, want)), (f, m.group(1), got, want)
        n += 1
    assert n >= 3, (f, "too few predictor rows parsed")
    print(f"ok: docs/findings.md quotes {f} ({n} predictors)")
PYEOF
  for f in "$fd"/compare_predictors*.json; do
    [ -f "$f" ] || continue
    s=$($PY -c "import json, os, sys; print(os.path.basename(json.load(open(sys.argv[1]))['study']))" "$f")
    ctx=$($PY -c "import json, sys; print('--context-from' if json.load(open(sys.argv[1])).get('context_from') else '')" "$f")
    $PY "$root/tools/reference/compare_predictors.py" "$tmp/$s" -o "$tmp/cmp.json" ${ctx:+$ctx "$tmp/res"} >/dev/null
    $PY - "$tmp/cmp.json" "$f" <<'PYEOF'
import json, sys
a, b = (json.load(open(p))["comparisons"] for p in sys.argv[1:3])
assert [x["predictor"] for x in a] == [x["predictor"] for x in b]
for x, y in zip(a, b):
    for k in ("spearman", "pearson", "spearman_diff", "spearman_diff_ci", "spearman_frac_not_better", "pearson_diff",
              "pearson_diff_ci"):
        u, v = (z[k] if isinstance(z[k], list) else [z[k]] for z in (x, y))
        assert all(abs(p - q) < 1e-9 for p, q in zip(u, v)), (y["predictor"], k, u, v)
print(f"ok: {sys.argv[2].split('/')[-1]} regenerates")
PYEOF
  done
  if [ -f "$fd/calibration.json" ]; then
    $PY "$root/tools/reference/calibrate.py" --ess "$ESS" --results "$tmp/res" -o "$tmp/cal.json" >/dev/null
    $PY - "$tmp/cal.json" "$fd/calibration.json" <<'PYEOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
for k in ("confusion_calibration", "confusion_heldout", "confusion_unseen"):
    assert a[k] == b[k], k
assert [(m["name"], m["verdicts"], m["label"]) for m in a["models"]] == [(m["name"], m["verdicts"], m["label"]) for m in b["models"]]
print(f"ok: calibration.json: verdicts and confusion tables of {len(b['models'])} models regenerate")
PYEOF
  fi
fi

if [ -f "$fd/distill.json" ]; then
  $PY - "$ESS" "$root" "$tmp" <<'PYEOF'
import json, os, subprocess, sys
import h5py
import numpy as np
import scipy.stats as ss

ess, root, tmp = sys.argv[1:4]
d = json.load(open(os.path.join(root, "data", "findings", "distill.json")))
states, rows, teachers = d["states"], d["rows"], d["teachers"]
assert len(teachers) >= 2 and len({t["kv"] for t in teachers}) >= 2, "teachers at two difficulties"
assert len(rows) == len(teachers) * len(states)


def close(a, b, what, rel=1e-9):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape and np.all(np.abs(a - b) <= rel * np.maximum(1, np.abs(b))), f"{what}: {a} vs {b}"


for t in teachers:
    res = os.path.join(tmp, t["name"] + ".h5")
    subprocess.run([ess, "analyze", os.path.join(root, "data", "zoo", t["name"]), "--mqar", t["spec"], "-o", res,
                    "--keep-sigma", str(max(states)), "--quiet", "--threads", "2"], check=True, stdout=subprocess.DEVNULL)
    with h5py.File(res, "r") as f:
        assert abs(float(f.attrs["mqar_accuracy"]) - t["accuracy_ess"]) < 1e-12, t["name"]
    rep = json.loads(subprocess.run([ess, "report", res, "--format", "json"], check=True, capture_output=True, text=True).stdout)
    close([l["mean_tolerance_ess"] for l in rep["layers"]], t["tolerance_ess"], t["name"] + " tolerance-ESS")
    close([l["mean_entropy_ess"] for l in rep["layers"]], t["entropy_ess"], t["name"] + " entropy-ESS")
    comp = json.loads(subprocess.run([ess, "compress", res, "--state", ",".join(map(str, states)), "--format", "json"],
                                     check=True, capture_output=True, text=True).stdout)
    for r in rows:
        if r["teacher"] == t["name"]:
            got = [next(x["mean_tail"] for x in l["targets"] if x["state"] == r["student_state"]) for l in comp["layers"]]
            close(got, r["tail"], f"{t['name']} tail at N_s = {r['student_state']}", 1e-9)
    # The tail is non-increasing in N_s (Eckart–Young) and zero from the block rank on.
    for li in range(len(comp["layers"])):
        tails = [r["tail"][li] for r in sorted(rows, key=lambda r: r["student_state"]) if r["teacher"] == t["name"]]
        assert all(a >= b - 1e-12 for a, b in zip(tails, tails[1:])), tails
    print(f"ok: {t['name']} accuracy {t['accuracy_ess']:.4f}, ESS and compress tails regenerate")

# Correlations recomputed from the rows.
by_t = {t["name"]: t for t in teachers}
pred = {"compress_tail": lambda r: np.mean(r["tail"]),
        "teacher_entropy_ess/N_s": lambda r: np.mean(by_t[r["teacher"]]["entropy_ess"]) / r["student_state"],
        "teacher_tolerance_ess/N_s": lambda r: np.mean(by_t[r["teacher"]]["tolerance_ess"]) / r["student_state"],
        "N_s/kv": lambda r: r["student_state"] / r["kv"]}
outc = {"matching_error": lambda r: np.mean(r["matching_error"]), "student_loss": lambda r: r["student_loss"],
        "student_accuracy": lambda r: r["student_accuracy_ess"],
        "accuracy_ratio": lambda r: r["student_accuracy_ess"] / r["teacher_accuracy_ess"]}
cors = d["summary"]["correlations"]
assert {(c["predictor"], c["outcome"]) for c in cors} == {(p, o) for p in pred for o in outc}
for c in cors:
    rho = ss.spearmanr([pred[c["predictor"]](r) for r in rows], [outc[c["outcome"]](r) for r in rows])[0]
    assert abs(rho - c["spearman"]) < 1e-9, c
# compress's recommendation, recomputed: per layer the smallest N_s with mean tail ≤ max-error; the model's
# (one N_s for every layer) is the largest over layers.
for rec in d["summary"]["recommendations"]:
    tr = sorted([r for r in rows if r["teacher"] == rec["teacher"]], key=lambda r: r["student_state"])
    per = [min([r["student_state"] for r in tr if r["tail"][li] <= rec["max_error"]], default=None)
           for li in range(len(tr[0]["tail"]))]
    n = None if None in per else max(per)
    assert n == rec["recommended_state"], (rec, per)
    if n is not None:
        acc = next(r["student_accuracy_ess"] for r in tr if r["student_state"] == n)
        assert rec["reaches_95pct"] == (acc >= 0.95 * by_t[rec["teacher"]]["accuracy_ess"]), rec
print(f"ok: {len(cors)} rank correlations and {len(d['summary']['recommendations'])} recommendations recomputed")
PYEOF
fi

if [ -f "$fd/modulation.json" ]; then
  $PY - "$ESS" "$root" "$tmp" <<'PYEOF'
import json, os, subprocess, sys
import h5py
import numpy as np
from scipy.stats import wilcoxon

ess, root, tmp = sys.argv[1:4]
text = os.path.join(root, "data", "zoo", "text")
mod = json.load(open(os.path.join(root, "data", "findings", "modulation.json")))
meta = json.load(open(os.path.join(text, "eos_tokens.json")))
n, pos, L = meta["rows_with_eos"], meta["eos_positions"], meta["seq_len"]
tok = np.loadtxt(os.path.join(text, "eos_tokens.txt"), dtype=int)
assert tok.shape == (2 * n, L)
for k, e in enumerate(pos):
    assert list(np.flatnonzero(tok[k] == 0)) == [e], k
assert not np.any(tok[n:] == 0), "control rows hold no EOS"
assert set(mod["models"]) == {"sa", "gla", "la"}
for name, m in mod["models"].items():
    cfg = json.load(open(os.path.join(text, name, "config.json")))
    assert cfg["eos_token_id"] == 0
    res = os.path.join(tmp, f"text-{name}.h5")
    # only the blocks right after each EOS (the stored values come from a run over every block)
    subprocess.run([ess, "analyze", os.path.join(text, name), "--tokens", os.path.join(text, "eos_tokens.txt"), "-o", res,
                    "--indices", ",".join(str(e + 1) for e in sorted(set(pos))), "--quiet", "--threads", "2"],
                   check=True, stdout=subprocess.DEVNULL)
    with h5py.File(res, "r") as f:
        assert set(f["layers"]) == set(m["layers"])
        for lname, g in f["layers"].items():
            idx = list(g["indices"][...])
            for metric in ("tolerance_ess", "entropy_ess"):
                E = g[metric][...].astype(float).mean(1)  # [rows, blocks], mean over heads
                at = np.array([E[k, idx.index(e + 1)] for k, e in enumerate(pos)])
                ctrl = np.array([E[n + k, idx.index(e + 1)] for k, e in enumerate(pos)])
                s = m["layers"][lname][metric]
                assert abs(at.mean() - s["after_eos"]) <= 1e-9 * max(1, at.mean()), (name, lname, metric)
                assert abs(ctrl.mean() - s["control_same_i"]) <= 1e-9 * max(1, ctrl.mean()), (name, lname, metric)
                drop = 1 - at / ctrl
                assert abs(drop.mean() - s["mean_drop"]) < 1e-9
                lo, hi = s["mean_drop_ci95"]
                assert lo <= drop.mean() <= hi
                p = 1.0 if np.all(at == ctrl) else wilcoxon(at, ctrl).pvalue
                assert abs(p - s["wilcoxon_p"]) < 1e-9, (name, lname, metric, p, s["wilcoxon_p"])
    print(f"ok: text LM {name}: ESS after EOS and in the control rows regenerate")
PYEOF
fi
echo "findings: predictors, calibration, distillation and state modulation regenerate from the shipped checkpoints"
