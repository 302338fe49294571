#!/usr/bin/env bash
# Resumable runs (docs/reliability.md, "Interrupted runs and --resume"): compute and analyze killed
# after k layers (ESS_TEST_KILL_AFTER_LAYERS: SIGKILL right after the k-th finished layer), or by
# SIGKILL / SIGTERM / SIGINT at a random moment, leave no output file, only RESULTS.h5.partial/;
# `--resume` finishes the run without measuring the finished layers again (their stored `seconds`
# are the killed run's), and the result equals an uninterrupted run's: every dataset identical,
# every attribute identical except the timestamp `created` and the per-layer wall times `seconds`.
# A resume with other options is refused (exit 2, naming the option); a run without --resume
# replaces the sidecar and says so.
set -uo pipefail
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
$PY -c "import h5py, numpy" 2>/dev/null || { echo "no h5py/numpy: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# Datasets and attributes of A and B equal (attributes `created` and `seconds` excepted).
same() {  # A B
  $PY - "$1" "$2" <<'PYEOF'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
def attrs(o):
    return {k: v for k, v in o.attrs.items() if k not in ("created", "seconds")}
def eq(x, y):
    return np.array_equal(x, y, equal_nan=True) if isinstance(x, np.ndarray) and x.dtype.kind == "f" else np.array_equal(x, y)
names = []
a.visit(names.append)
other = []
b.visit(other.append)
assert sorted(names) == sorted(other), set(names) ^ set(other)
for o in [""] + names:
    x, y = (a[o], b[o]) if o else (a, b)
    ax, ay = attrs(x), attrs(y)
    assert ax.keys() == ay.keys(), (o, ax.keys() ^ ay.keys())
    for k in ax:
        assert eq(np.asarray(ax[k]), np.asarray(ay[k])), (o, k, ax[k], ay[k])
    if isinstance(x, h5py.Dataset):
        assert x.dtype == y.dtype and x.shape == y.shape, o
        assert eq(x[...], y[...]), o
PYEOF
}

$PY "$root/tests/cli/make_random_ops.py" "$tmp/ops.h5" 5 || exit 1
args=(--quiet --threads 1 --keep-sigma 3)
# Every run writes $out, so that the recorded command lines match; references are moved aside.
out="$tmp/out.h5"
"$ESS" compute "$tmp/ops.h5" -o "$out" "${args[@]}" > /dev/null || { echo "FAIL: compute"; exit 1; }
mv "$out" "$tmp/full.h5"
"$ESS" compute "$tmp/ops.h5" -o "$out" "${args[@]}" --engine dense > /dev/null || { echo "FAIL: compute dense"; exit 1; }
mv "$out" "$tmp/dense.h5"
layers=$($PY -c "import h5py, sys; print(len(h5py.File(sys.argv[1])['layers']))" "$tmp/full.h5")

# Killed after k layers, then resumed.
for k in 1 3 $((layers - 1)); do
  ESS_TEST_KILL_AFTER_LAYERS=$k "$ESS" compute "$tmp/ops.h5" -o "$out" "${args[@]}" > /dev/null 2>&1
  rc=$?
  [ "$rc" = 137 ] || { echo "FAIL: k=$k: exit $rc, expected 137 (SIGKILL)"; fail=1; }
  [ ! -e "$out" ] || { echo "FAIL: k=$k: an output exists after the kill"; fail=1; }
  n=$(find "$out.partial" -name 'layer-*.h5' | wc -l)
  [ "$n" = "$k" ] || { echo "FAIL: k=$k: $n layer files in the sidecar"; fail=1; }
  cp -r "$out.partial" "$tmp/side$k"
  "$ESS" compute "$tmp/ops.h5" -o "$out" "${args[@]}" --resume > /dev/null 2> "$tmp/err" || { echo "FAIL: k=$k: resume"; cat "$tmp/err"; fail=1; }
  grep -c "$k layer(s) already done" "$tmp/err" > /dev/null || { echo "FAIL: k=$k: resume did not say so"; cat "$tmp/err"; fail=1; }
  [ ! -e "$out.partial" ] || { echo "FAIL: k=$k: sidecar left after success"; fail=1; }
  same "$tmp/full.h5" "$out" || { echo "FAIL: k=$k: resumed file differs"; fail=1; }
  mv "$out" "$tmp/r$k.h5"
  # The finished layers were loaded, not measured again: their wall time is the killed run's.
  $PY - "$tmp/r$k.h5" "$tmp/side$k" <<'PYEOF' || { echo "FAIL: k=$k: a finished layer was measured again"; fail=1; }
import glob, sys, h5py
out = h5py.File(sys.argv[1])
for f in glob.glob(sys.argv[2] + "/layer-*.h5"):
    side = h5py.File(f)
    for n in side["layers"]:
        assert out["layers"][n].attrs["seconds"] == side["layers"][n].attrs["seconds"], n
PYEOF
done

# A resume with other options is refused; without --resume the sidecar is replaced.
ESS_TEST_KILL_AFTER_LAYERS=2 "$ESS" compute "$tmp/ops.h5" -o "$out" "${args[@]}" > /dev/null 2>&1
"$ESS" compute "$tmp/ops.h5" -o "$out" "${args[@]}" --tol 1e-2 --resume > /dev/null 2> "$tmp/err"
rc=$?
{ [ "$rc" = 2 ] && grep -c "cannot resume.*tol" "$tmp/err" > /dev/null && [ ! -e "$out" ]; } ||
  { echo "FAIL: resume with another --tol: exit $rc"; cat "$tmp/err"; fail=1; }
"$ESS" compute "$tmp/ops.h5" -o "$out" "${args[@]}" > /dev/null 2> "$tmp/err" || { echo "FAIL: rerun"; fail=1; }
grep -c "replacing .*out.h5.partial" "$tmp/err" > /dev/null || { echo "FAIL: no note about the replaced sidecar"; cat "$tmp/err"; fail=1; }
same "$tmp/full.h5" "$out" || { echo "FAIL: rerun differs"; fail=1; }
rm -f "$out"

# Signals at random moments (dense engine: a slower run), then resumed.
for sig in KILL TERM INT KILL; do
  # A background job of a script starts with SIGINT ignored: restore the default before exec.
  $PY -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$ESS" compute "$tmp/ops.h5" -o "$out" --quiet --threads 1 --keep-sigma 3 --engine dense > /dev/null 2>&1 &
  pid=$!
  delay="0.$((RANDOM % 10))$((RANDOM % 10))"  # the run takes about a second
  sleep "$delay"
  kill -s "$sig" "$pid" 2> /dev/null
  wait "$pid" 2> /dev/null
  rc=$?
  if [ "$rc" != 0 ]; then
    # An output exists only when the kill came after the rename: then it is the whole file.
    if [ -e "$out" ]; then same "$tmp/dense.h5" "$out" || { echo "FAIL: SIG$sig: partial output"; fail=1; }; fi
    ls -a "$(dirname "$out")" | grep -c "$(basename "$out").tmp" > /dev/null && { echo "FAIL: SIG$sig left a temporary"; fail=1; }
  fi
  "$ESS" compute "$tmp/ops.h5" -o "$out" --quiet --threads 1 --keep-sigma 3 --engine dense --resume > /dev/null 2> "$tmp/err" ||
    { echo "FAIL: resume after SIG$sig"; cat "$tmp/err"; fail=1; }
  echo "SIG$sig after $delay s: exit $rc; $(grep -o '[0-9]* layer(s) already done' "$tmp/err" || echo 'nothing to resume')"
  same "$tmp/dense.h5" "$out" || { echo "FAIL: resumed after SIG$sig (exit $rc) differs"; fail=1; }
  rm -f "$out"
done

# analyze: the forward pass runs again, finished layers are loaded; /model is the same.
ck="$root/data/checkpoints/tiny-mamba"
aargs=(--tokens "$ck/tokens.txt" --quiet --threads 1)
"$ESS" analyze "$ck" -o "$out" "${aargs[@]}" > /dev/null || { echo "FAIL: analyze"; fail=1; }
mv "$out" "$tmp/afull.h5"
ESS_TEST_KILL_AFTER_LAYERS=1 "$ESS" analyze "$ck" -o "$out" "${aargs[@]}" > /dev/null 2>&1
rc=$?
[ "$rc" = 137 ] && [ ! -e "$out" ] || { echo "FAIL: analyze kill: exit $rc"; fail=1; }
"$ESS" analyze "$ck" -o "$out" "${aargs[@]}" --resume > /dev/null 2> "$tmp/err" || { echo "FAIL: analyze --resume"; cat "$tmp/err"; fail=1; }
grep -c "1 layer(s) already done" "$tmp/err" > /dev/null || { echo "FAIL: analyze resume did not say so"; cat "$tmp/err"; fail=1; }
same "$tmp/afull.h5" "$out" || { echo "FAIL: analyze resumed differs"; fail=1; }
# Other input tokens: refused.
ESS_TEST_KILL_AFTER_LAYERS=1 "$ESS" analyze "$ck" -o "$tmp/b.h5" "${aargs[@]}" > /dev/null 2>&1
sed 's/^\([0-9]*\) /\1 1 /' "$ck/tokens.txt" | awk '{$NF=""; print}' > "$tmp/tok2.txt"
"$ESS" analyze "$ck" -o "$tmp/b.h5" --tokens "$tmp/tok2.txt" --quiet --threads 1 --resume > /dev/null 2> "$tmp/err"
rc=$?
{ [ "$rc" = 2 ] && grep -c "cannot resume" "$tmp/err" > /dev/null; } || { echo "FAIL: analyze resume with other tokens: exit $rc"; cat "$tmp/err"; fail=1; }
exit $fail
