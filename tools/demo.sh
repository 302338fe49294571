#!/usr/bin/env bash
# The demo: install, build, then analyse the shipped example and print a report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh >/dev/null
ESS=build/ess
out=${ESS_DEMO_OUT:-$(mktemp -d)}
mkdir -p "$out"
echo "== ess compute: ESS of every layer of the shipped operator file data/demo/ops.h5"
$ESS compute data/demo/ops.h5 -o "$out/results.h5" --keep-sigma 64 --quiet
echo
echo "== ess report"
$ESS report "$out/results.h5"
echo
echo "(results in $out/results.h5; try: $ESS inspect $out/results.h5)"
