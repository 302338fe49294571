#!/usr/bin/env bash
# Executes every notebook in notebooks/ headless (nbconvert --execute) on the shipped results
# file data/demo/results.h5 (or, when it is absent, on results computed from data/demo/ops.h5),
# and checks that each one ran without error and saved its PNG figures. Then runs the
# compressibility notebook on a file without singular values, through $ESS_RESULTS, and the
# per-position loss notebook on a file `ess analyze` wrote (with /model).
set -euo pipefail
ESS=$(realpath "$1")
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
if $PY -c "import nbconvert" 2>/dev/null; then
  nbconvert=("$PY" -m nbconvert)
elif command -v jupyter-nbconvert >/dev/null; then
  nbconvert=(jupyter-nbconvert)
else
  echo "SKIP: jupyter-nbconvert is not installed (apt-get install jupyter-nbconvert python3-ipykernel)"
  exit 77
fi
$PY -c "import h5py, matplotlib, numpy, ipykernel" \
  || { echo "FAIL: nbconvert is installed but h5py / matplotlib / numpy / ipykernel are missing"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export MPLBACKEND=Agg PYTHONDONTWRITEBYTECODE=1 ESS_BIN="$ESS"

run() {  # run OUTDIR NOTEBOOK...: execute notebooks, figures to OUTDIR/figures
  local out=$1
  shift
  for nb in "$@"; do
    if ! ESS_FIGURES="$out/figures" "${nbconvert[@]}" --to notebook --execute --ExecutePreprocessor.timeout=300 \
      --ExecutePreprocessor.kernel_name=python3 --output-dir "$out/executed" "$root/notebooks/$nb" \
      >"$tmp/log" 2>&1; then
      cat "$tmp/log"
      echo "FAIL: $nb"
      exit 1
    fi
    echo "ok: $nb ran (${ESS_RESULTS:-default results file})"
  done
}

png_ok() {  # png_ok FILE: exists, is a PNG, and is not trivially small
  [ -s "$1" ] && [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] && [ "$(stat -c %s "$1")" -gt 5000 ]
}

cd "$root/notebooks"
notebooks=(*.ipynb)
[ "${#notebooks[@]}" -ge 4 ] || { echo "FAIL: expected the four notebooks in notebooks/"; exit 1; }
if [ -f "$root/data/demo/results.h5" ]; then
  unset ESS_RESULTS  # the notebooks' own default: ../data/demo/results.h5
else
  "$ESS" compute "$root/data/demo/ops.h5" -o "$tmp/results.h5" --keep-sigma 32 --quiet >/dev/null
  export ESS_RESULTS="$tmp/results.h5"
fi
run "$tmp/main" "${notebooks[@]}"
for fig in ess_profiles ess_heatmaps saturation_overview channel_classes compressibility loss_vs_ess; do
  png_ok "$tmp/main/figures/$fig.png" || { echo "FAIL: figure $fig.png missing or not a PNG"; exit 1; }
done
# The findings notebooks (04–07) read data/findings/*.json; each saves its figure.
for fig in zoo_predictors distillation state_modulation diagnosis_calibration; do
  if ls "$root/notebooks/"0[4-7]_*.ipynb >/dev/null 2>&1; then
    png_ok "$tmp/main/figures/$fig.png" || { echo "FAIL: figure $fig.png missing or not a PNG"; exit 1; }
  fi
done
echo "ok: every figure written"
# No notebook printed an error or a traceback.
if grep -l '"output_type": "error"' "$tmp/main/executed/"*.ipynb; then echo "FAIL: error output"; exit 1; fi

# A file without `sigma`: the compressibility notebook says so instead of failing.
"$ESS" compute "$root/data/demo/ops.h5" -o "$tmp/nosigma.h5" --quiet >/dev/null
ESS_RESULTS="$tmp/nosigma.h5" run "$tmp/nosigma" 03_compressibility.ipynb
grep -q "no sigma in the file" "$tmp/nosigma/executed/03_compressibility.ipynb" \
  || { echo "FAIL: 03_compressibility did not report the missing sigma"; exit 1; }
png_ok "$tmp/nosigma/figures/compressibility.png" || { echo "FAIL: compressibility.png missing"; exit 1; }
grep -q "no /model group in the file" "$tmp/main/executed/08_loss_vs_ess.ipynb" \
  || { echo "FAIL: 08_loss_vs_ess did not say the demo file has no predictions"; exit 1; }

# Per-position loss beside ESS on a file `ess analyze` wrote (the MQAR-trained model on a fresh batch).
"$ESS" analyze "$root/data/checkpoints/mqar-llama" --mqar kv=8,len=64,n=2,seed=3 -o "$tmp/analyzed.h5" --quiet >/dev/null
ESS_RESULTS="$tmp/analyzed.h5" run "$tmp/analyzed" 08_loss_vs_ess.ipynb
grep -q "nats/token, perplexity" "$tmp/analyzed/executed/08_loss_vs_ess.ipynb" && grep -q "spearman" "$tmp/analyzed/executed/08_loss_vs_ess.ipynb" \
  || { echo "FAIL: 08_loss_vs_ess printed no loss or correlation for an analyze results file"; exit 1; }
png_ok "$tmp/analyzed/figures/loss_vs_ess.png" || { echo "FAIL: loss_vs_ess.png missing"; exit 1; }
echo "notebooks: all executed headless, figures written"

# The notebooks' helpers agree with the tool they illustrate (verdicts, utilization, tails).
$PY "$root/tests/cli/esslib_matches_diagnose.py" "$ESS" "$root/data/demo/results.h5" "$tmp/nosigma.h5" "$tmp/analyzed.h5"
