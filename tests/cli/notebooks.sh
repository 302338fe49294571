#!/usr/bin/env bash
# Executes every notebook headless on a results file made by `ess compute` from the shipped demo
# operators, and checks that each saved its figures.
set -euo pipefail
ESS=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! command -v jupyter >/dev/null || ! /usr/bin/python3 -c "import nbconvert, h5py, matplotlib" 2>/dev/null; then
  echo "SKIP: jupyter-nbconvert / h5py / matplotlib not installed (tools/setup.sh installs them)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ESS" compute "$root/data/demo/ops.h5" -o "$tmp/results.h5" --keep-sigma 16 --quiet >/dev/null
export ESS_RESULTS="$tmp/results.h5" ESS_FIGURES="$tmp/figures" MPLBACKEND=Agg
cd "$root/notebooks"
for nb in *.ipynb; do
  jupyter nbconvert --to notebook --execute --ExecutePreprocessor.timeout=300 --output-dir "$tmp/executed" "$nb" >/dev/null 2>"$tmp/log" \
    || { cat "$tmp/log"; echo "FAIL: $nb"; exit 1; }
  echo "ok: $nb"
done
for fig in ess_profiles saturation_overview channel_classes compressibility; do
  [ -s "$tmp/figures/$fig.png" ] || { echo "FAIL: figure $fig.png missing"; exit 1; }
done
echo "notebooks: all executed, figures written"
