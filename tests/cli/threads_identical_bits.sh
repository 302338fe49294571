#!/usr/bin/env bash
# `ess analyze` writes the same bytes in every dataset (and the same attributes but the timings and
# the command line: tests/cli/same_bytes.py) whatever --threads is (1, 2, 3): the forward
# pass's products and heads are cut into pieces whose shapes do not depend on the thread count
# (libess/parallel.h). Before 2026-12-03 OpenBLAS threaded each product itself and cut Mamba's
# x_proj (18 output columns) by its thread count: on 2 × 300 tokens, tiny-jamba's files from
# --threads 1 and 2 differed in the last bits of 23 datasets, and so did `ess analyze` against
# `mpirun -n 2 ess analyze` (one thread per rank). Checkpoints: the Mamba families (Mamba, the
# Jamba and Falcon-H1 hybrids) and a Llama, on inputs long enough for the BLAS to thread.
set -uo pipefail
ESS=$1
PY=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
$PY -c "import h5py, numpy" 2>/dev/null || { echo "skip: needs numpy and h5py"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# 2 rows × 300 token ids below 60 (every tiny checkpoint's vocabulary is larger).
$PY "$here/random_tokens.py" 2 300 60 5 >"$tmp/tokens.txt"
for name in tiny-mamba tiny-jamba tiny-falcon-h1 tiny-llama; do
  d=$root/data/checkpoints/$name
  for t in 1 2 3; do
    "$ESS" analyze "$d" --tokens "$tmp/tokens.txt" -o "$tmp/$name.$t.h5" --threads "$t" --blocks 8 --quiet \
      >"$tmp/$name.$t.out" 2>&1 || { echo "FAIL: analyze $name --threads $t"; cat "$tmp/$name.$t.out"; fail=1; }
  done
  $PY "$here/same_bytes.py" "$name, --threads 1 and 2" "$tmp/$name.1.h5" "$tmp/$name.2.h5" \
    "$name, --threads 1 and 3" "$tmp/$name.1.h5" "$tmp/$name.3.h5" || fail=1
done
[ $fail = 0 ] && echo "ok: the same bytes with 1, 2 and 3 threads"
exit $fail
