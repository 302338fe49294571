#!/usr/bin/env bash
# `mpirun -n P ess compute|analyze` (docs/scale-out.md) against one process: every dataset of the
# results file byte for byte, every attribute equal (timings and the command line excepted), on
# operator files of several families and engines, every tolerance mode, --keep-sigma, sparse
# students, and on a tiny checkpoint. A failing rank — an unreadable input on rank 1, or a rank
# failing mid-run while the others wait for it (the ESS_MPI_TEST_FAIL test hook) — ends the run
# with a non-zero exit, no output file and no temporary file. Skipped (77) only without mpirun.
set -uo pipefail
[ -n "${MPI_TRACE:-}" ] && { PS4="+ \$(date +%s.%N | cut -c7-14) "; set -x; }
ESS=$1
PY=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
command -v mpirun >/dev/null || { echo "skip: mpirun not found (Debian: openmpi-bin)"; exit 77; }
$PY -c "import h5py, numpy" 2>/dev/null || { echo "skip: needs numpy and h5py"; exit 77; }
ldd "$ESS" | grep -c libmpi >/dev/null || { echo "FAIL: $ESS is not built with MPI (CMake ESS_MPI)"; exit 1; }
# What ess would set by re-executing itself (tools/ess/main.cpp): saves a start per rank.
export OPENBLAS_NUM_THREADS=1 GLIBC_TUNABLES=glibc.malloc.hugetlb=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# In a container: as root, more ranks than cores, local start (no ssh), shared memory only (no network; no
# cross-process memory attach, which containers often forbid).
flags=(--oversubscribe --mca plm isolated --mca btl self,vader --mca btl_vader_single_copy_mechanism none)
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
mpi() { local n=$1; shift; mpirun "${flags[@]}" -n "$n" "$@"; }

# Operator files: every family (small), and a wide Mamba layer (19 channels: SIMD packs of 8 split
# across ranks, auto → structured engine).
$PY "$here/make_random_ops.py" "$tmp/ops.h5" 3 || exit 1
$PY - "$tmp/wide.h5" "$root/tools/python" <<'PYEOF' || exit 1
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from ess_writer import OperatorFileWriter
rng = np.random.default_rng(5)
B, D, L, N = 1, 19, 40, 4
with OperatorFileWriter(sys.argv[1], seq_len=L) as w:
    w.add_mamba("wide", rng.uniform(0.01, 0.6, (B, D, L)), rng.uniform(-2, -0.1, (D, N)),
                rng.standard_normal((B, L, N)), rng.standard_normal((B, L, N)))
    w.add_mamba("wide2", rng.uniform(0.01, 0.6, (2, 5, L)), rng.uniform(-2, -0.1, (5, N)),
                rng.standard_normal((2, L, N)), rng.standard_normal((2, L, N)))
PYEOF

# One softmax head at L = 700 (the sweep engine; fewer heads than threads, so LAPACK gets the
# threads inside each step's SVD — as many as one process would give it, also on a rank that has
# fewer: before 2026-12-03 a rank used its own share of the cores and 3 datasets differed).
$PY - "$tmp/head.h5" "$root/tools/python" <<'PYEOF' || exit 1
import sys
import numpy as np
sys.path.insert(0, sys.argv[2])
from ess_writer import OperatorFileWriter
rng = np.random.default_rng(3)
L = 700
with OperatorFileWriter(sys.argv[1], seq_len=L) as w:
    w.add_softmax_attention("head", 0.8 * rng.standard_normal((1, 1, L, 16)), 0.8 * rng.standard_normal((1, 1, L, 16)))
PYEOF

# check NAME RANKS ARGS…: one process and RANKS ranks; the files are compared at the end.
pairs=()
check() {
  local name=$1 ranks=$2
  shift 2
  if ! "$ESS" "$@" -o "$tmp/$name.one.h5" --quiet >"$tmp/$name.one.out" 2>&1; then
    echo "FAIL: $name: one process failed"; cat "$tmp/$name.one.out"; fail=1; return
  fi
  if ! mpi "$ranks" "$ESS" "$@" -o "$tmp/$name.mpi.h5" >"$tmp/$name.mpi.out" 2>&1; then
    echo "FAIL: $name: mpirun -n $ranks failed"; cat "$tmp/$name.mpi.out"; fail=1; return
  fi
  if [ "$(grep -c '^wrote ' "$tmp/$name.mpi.out")" != 1 ]; then
    echo "FAIL: $name: the summary is not printed exactly once (rank 0 only)"; fail=1
  fi
  pairs+=("mpirun -n $ranks, $name" "$tmp/$name.one.h5" "$tmp/$name.mpi.h5")
}

check absolute 2 compute "$tmp/ops.h5" --keep-sigma 3
check block-dense 2 compute "$tmp/ops.h5" --tol-mode block --tol 1e-2 --engine dense
# 3 ranks: uneven shares, and an empty one (the 2-channel conv layer); students of every family.
check layer-students 3 compute "$tmp/ops.h5" --tol-mode layer --tol 1e-2 --keep-sigma 2 --students 'families=all;ess=all'
check lanczos 2 compute "$tmp/ops.h5" --engine lanczos --tol-mode layer --keep-sigma 2
check structured 2 compute "$tmp/wide.h5" --tol-mode layer --keep-sigma 4
check sweep-one-head 2 compute "$tmp/head.h5" --keep-sigma 4
[ "$(grep -c 'engine=structured' "$tmp/structured.one.out")" = 2 ] ||
  { echo "FAIL: the wide file was not measured by the structured engine"; fail=1; }
for ckpt in tiny-mamba2 tiny-llama; do
  d=$root/data/checkpoints/$ckpt
  check "analyze-$ckpt" 2 analyze "$d" --tokens "$d/tokens.txt" --tol-mode layer --keep-sigma 4
done
# A hybrid (Mamba + attention) on 2 × 300 tokens, with the default threads (all cores for one
# process, shared among the ranks): products large enough for the BLAS to thread. Before
# 2026-12-03 the forward pass's bits followed the thread count and 23 datasets differed here
# (tests/cli/threads_identical_bits.sh).
$PY "$here/random_tokens.py" 2 300 60 5 >"$tmp/tokens300.txt"
check analyze-tiny-jamba-300 2 analyze "$root/data/checkpoints/tiny-jamba" --tokens "$tmp/tokens300.txt" --blocks 8

# Every dataset's bytes, dtype and shape; every attribute but timings and the command line.
$PY "$here/same_bytes.py" "${pairs[@]}" || fail=1

# Failures: an unreadable input on rank 1 only (MPMD launch), then ranks failing mid-run.
out=$tmp/fail
mkdir -p "$out"
printf 'not hdf5' >"$tmp/garbage.h5"
# expect_failure WHAT COMMAND…: non-zero exit, an error message, nothing left in $out.
expect_failure() {
  local what=$1 rc=0
  shift
  "$@" >"$tmp/fail.log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    echo "FAIL: $what: exit 0"; fail=1
  elif [ -n "$(ls -A "$out")" ]; then
    echo "FAIL: $what: files left behind: $(ls -A "$out" | tr '\n' ' ')"; fail=1
  elif ! grep -c 'ess compute\|ess analyze' "$tmp/fail.log" >/dev/null; then
    echo "FAIL: $what: no error message from ess"; cat "$tmp/fail.log"; fail=1
  else
    echo "ok: $what: exit $rc, no output, no temporary file ($(grep -m1 '^ess .*error' "$tmp/fail.log"))"
  fi
}
expect_failure "rank 1 given an unreadable input" \
  mpirun "${flags[@]}" -n 1 "$ESS" compute "$tmp/ops.h5" -o "$out/r.h5" : -n 1 "$ESS" compute "$tmp/garbage.h5" -o "$out/r.h5"
for spec in 1:3 0:2; do
  ESS_MPI_TEST_FAIL=$spec expect_failure "ESS_MPI_TEST_FAIL=$spec (rank:layer)" \
    mpi 2 "$ESS" compute "$tmp/ops.h5" -o "$out/r.h5" --tol-mode layer
done
d=$root/data/checkpoints/tiny-llama
ESS_MPI_TEST_FAIL=1:1 expect_failure "analyze, rank 1 fails at layer 1" \
  mpi 2 "$ESS" analyze "$d" --tokens "$d/tokens.txt" -o "$out/r.h5"

# Other commands refuse to run as several ranks (each would write the same output).
if mpi 2 "$ESS" report "$tmp/absolute.one.h5" >"$tmp/report.out" 2>&1; then
  echo "FAIL: ess report ran under mpirun -n 2"; fail=1
elif grep -c "only compute and analyze" "$tmp/report.out" >/dev/null; then
  echo "ok: ess report under mpirun -n 2 is refused"
else
  echo "FAIL: ess report under mpirun -n 2: unexpected message"; cat "$tmp/report.out"; fail=1
fi
exit $fail
