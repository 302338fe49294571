#!/usr/bin/env bash
# Bad input: a clear message naming file/layer/dataset, exit code 3 (2 for usage), no output left.
set -uo pipefail
ESS=$1
PY=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0

# expect CODE PATTERN -- command...: runs, checks exit code, stderr pattern, and no results file.
expect() {
  local code=$1 pattern=$2
  shift 3
  rm -f "$tmp/out/"* 2>/dev/null
  mkdir -p "$tmp/out"
  "$@" >"$tmp/stdout" 2>"$tmp/stderr"
  local got=$?
  local left
  left=$(ls -A "$tmp/out" | wc -l)
  if [ "$got" != "$code" ] || ! grep -q -- "$pattern" "$tmp/stderr" || [ "$left" != 0 ]; then
    echo "FAIL: $* -> exit $got (want $code), files left: $left, stderr:"; cat "$tmp/stderr"; fail=1
  else
    echo "ok: exit $code: $(head -c 200 "$tmp/stderr")"
  fi
}

# make NAME FAMILY python-dict-of-datasets [attrs]: a one-layer operator file written with h5py directly.
make() {
  $PY - "$tmp/$1" "$2" "$3" "${4:-{\}}" <<'PYEOF'
import sys, h5py, numpy as np
path, family, data, attrs = sys.argv[1], sys.argv[2], eval(sys.argv[3]), eval(sys.argv[4])
with h5py.File(path, "w") as f:
    f.attrs["format"] = "ess-operators"; f.attrs["format_version"] = np.array([1, 0])
    g = f.create_group("layers/blk3"); g.attrs["family"] = family; g.attrs["layer_index"] = 3
    for k, v in attrs.items(): g.attrs[k] = v
    for k, v in data.items(): g[k] = v
PYEOF
}
r="np.random.default_rng(0).standard_normal"
make missing.h5 softmax_attention "{'q': $r((1,2,8,3))}"
make shape.h5 mamba "{'dt': np.abs($r((1,3,8))), 'A': -np.abs($r((3,4))), 'B': $r((1,8,4)), 'C': $r((1,8,5))}"
make family.h5 hyena9000 "{'h': $r((2,3))}"
make nan.h5 gla "{'q': $r((1,2,8,3)), 'k': $r((1,2,8,3)), 'log_decay': np.full((1,2,8,3), np.nan)}"
make inf.h5 linear_attention "{'q': np.full((1,1,8,2), np.inf), 'k': $r((1,1,8,2))}"
make upper.h5 dense "{'T': $r((1,1,6,6))}"
make good.h5 dense "{'T': np.tril($r((1,2,6,6)))}"
head -c 1500 "$tmp/good.h5" > "$tmp/truncated.h5"
echo "this is not an HDF5 file" > "$tmp/text.h5"

expect 3 "missing dataset 'k'" -- "$ESS" compute "$tmp/missing.h5" -o "$tmp/out/r.h5"
expect 3 "blk3.*'C' has shape \[1, 8, 5\]" -- "$ESS" compute "$tmp/shape.h5" -o "$tmp/out/r.h5"
expect 3 "unknown operator family 'hyena9000'" -- "$ESS" compute "$tmp/family.h5" -o "$tmp/out/r.h5"
expect 3 "log_decay.*NaN" -- "$ESS" compute "$tmp/nan.h5" -o "$tmp/out/r.h5"
expect 3 "'q'.*Inf" -- "$ESS" compute "$tmp/inf.h5" -o "$tmp/out/r.h5"
expect 3 "not lower-triangular" -- "$ESS" compute "$tmp/upper.h5" -o "$tmp/out/r.h5"
expect 3 "truncated.h5" -- "$ESS" compute "$tmp/truncated.h5" -o "$tmp/out/r.h5"
expect 3 "not an HDF5 file" -- "$ESS" compute "$tmp/text.h5" -o "$tmp/out/r.h5"
expect 3 "no such file" -- "$ESS" compute "$tmp/absent.h5" -o "$tmp/out/r.h5"
expect 3 "does not exist" -- "$ESS" compute "$tmp/good.h5" -o "$tmp/out/nodir/r.h5"
if [ "$(id -u)" != 0 ]; then
  mkdir -p "$tmp/ro"; chmod 555 "$tmp/ro"
  expect 3 "not writable" -- "$ESS" compute "$tmp/good.h5" -o "$tmp/ro/r.h5"
fi
# A location nobody can create files in (even root): the error comes when the file is created.
"$ESS" compute "$tmp/good.h5" -o /proc/ess_test_results.h5 --quiet >/dev/null 2>"$tmp/stderr"
if [ $? = 3 ] && grep -q "cannot" "$tmp/stderr" && [ ! -e /proc/ess_test_results.h5 ]; then
  echo "ok: exit 3: $(cat "$tmp/stderr")"
else
  echo "FAIL: unwritable /proc output"; cat "$tmp/stderr"; fail=1
fi
expect 3 "is a directory" -- "$ESS" compute "$tmp/good.h5" -o "$tmp/out"
expect 2 "unknown --tol-mode" -- "$ESS" compute "$tmp/good.h5" -o "$tmp/out/r.h5" --tol-mode relative
expect 2 "unknown --engine" -- "$ESS" compute "$tmp/good.h5" -o "$tmp/out/r.h5" --engine magic
expect 2 "has no state-space realization" -- "$ESS" compute "$tmp/good.h5" -o "$tmp/out/r.h5" --engine structured
expect 2 "selects no block" -- "$ESS" compute "$tmp/good.h5" -o "$tmp/out/r.h5" --indices 9:20
expect 2 "output" -- "$ESS" compute "$tmp/good.h5"
expect 2 "unknown command" -- "$ESS" frobnicate
expect 3 "format" -- "$ESS" report "$tmp/good.h5"
# The good file works and leaves exactly one output file.
"$ESS" compute "$tmp/good.h5" -o "$tmp/out/r.h5" --quiet >/dev/null && [ "$(ls -A "$tmp/out")" = r.h5 ] \
  && echo "ok: good file computes" || { echo "FAIL: good file"; fail=1; }
exit $fail
