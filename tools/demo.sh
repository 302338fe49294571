#!/usr/bin/env bash
# The demo: install, build, then analyse the shipped example and print a report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh >/dev/null
ESS=build/ess
out=${ESS_DEMO_OUT:-$(mktemp -d)}
mkdir -p "$out"
echo "== ess analyze: a tiny Llama we trained on associative recall (data/checkpoints/mqar-llama),"
echo "   run in C++ on a fresh MQAR batch; every attention head's operator measured"
$ESS analyze data/checkpoints/mqar-llama --mqar kv=8,len=64,n=8,seed=0 -o "$out/mqar.h5" --keep-sigma 32 --quiet
echo
$ESS report "$out/mqar.h5"
echo
echo "== ess compute: ESS of every layer of the shipped operator file data/demo/ops.h5"
$ESS compute data/demo/ops.h5 -o "$out/results.h5" --keep-sigma 64 --quiet
echo
echo "== ess report"
$ESS report "$out/results.h5"
echo
echo "== ess diagnose: saturation / collapse"
$ESS diagnose "$out/results.h5"
echo
echo "== ess compress: how small a student state would do"
$ESS compress "$out/results.h5" --state 2,4,8,16,32
$ESS plot "$out/results.h5" -o "$out/ess.svg"
echo
echo "(results in $out/results.h5, figure in $out/ess.svg; notebooks in notebooks/ read the same file)"
