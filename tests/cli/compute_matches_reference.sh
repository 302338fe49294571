#!/usr/bin/env bash
# ess compute (every engine, every threshold mode) agrees with the independent NumPy reference on
# every operator family: the families ess registers (ess inspect --families), the Python writer and
# reference know (ess_writer.FAMILIES) and make_random_ops.py generates must be the same set, so a
# family added on one side only fails here.
set -euo pipefail
ESS=$1
PY=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Table rows after the header and rule: family, kind, realization (yes/no), summary.
"$ESS" inspect --families | tail -n +3 >"$tmp/families.txt"
awk '{print $1}' "$tmp/families.txt" | sort >"$tmp/ess_families"
$PY "$here/make_random_ops.py" --families | sort >"$tmp/py_families"
if ! diff "$tmp/ess_families" "$tmp/py_families" >/dev/null; then
  echo "FAIL: the families ess registers differ from those tools/python/ess_writer.py and make_random_ops.py know"
  diff "$tmp/ess_families" "$tmp/py_families" | sed 's/^</  only in ess:/; s/^>/  only in Python:/' | grep only
  exit 1
fi
echo "families: $(tr '\n' ' ' <"$tmp/ess_families")"
unstructured=$(awk '$3 == "no" {print $1}' "$tmp/families.txt" | tr '\n' ',')

$PY "$here/make_random_ops.py" "$tmp/ops.h5" 3
$PY - "$tmp/ops.h5" "$tmp/ess_families" <<'PYEOF'
import sys, h5py
with h5py.File(sys.argv[1]) as f:
    written = {g.attrs["family"] for g in f["layers"].values()}
expected = set(open(sys.argv[2]).read().split())
if written != expected:
    sys.exit(f"FAIL: the random operator file covers {sorted(written)}, expected {sorted(expected)}")
PYEOF
for mode in absolute block layer; do
  tol=1e-3
  [ "$mode" != absolute ] && tol=1e-2
  $PY "$here/../../tools/python/ess_reference.py" "$tmp/ops.h5" -o "$tmp/ref_$mode.h5" --tol $tol --tol-mode $mode
  for engine in auto dense sweep lanczos; do
    echo "== mode $mode, engine $engine"
    "$ESS" compute "$tmp/ops.h5" -o "$tmp/ess.h5" --engine $engine --tol $tol --tol-mode $mode --quiet --threads 2 >/dev/null
    $PY "$here/compare_results.py" "$tmp/ess.h5" "$tmp/ref_$mode.h5"
  done
done
# structured engine on the families with a realization: a file without the others.
$PY - "$tmp/ops.h5" "$tmp/ops_structured.h5" "$unstructured" <<'PYEOF'
import sys, h5py
src, dst, skip = sys.argv[1], sys.argv[2], set(filter(None, sys.argv[3].split(",")))
with h5py.File(src) as f, h5py.File(dst, "w") as g:
    for k, v in f.attrs.items(): g.attrs[k] = v
    for name, grp in f["layers"].items():
        if grp.attrs["family"] not in skip:
            f.copy(grp, g, f"layers/{name}")
PYEOF
$PY "$here/../../tools/python/ess_reference.py" "$tmp/ops_structured.h5" -o "$tmp/ref_s.h5"
"$ESS" compute "$tmp/ops_structured.h5" -o "$tmp/ess_s.h5" --engine structured --quiet >/dev/null
echo "== engine structured (all but: ${unstructured%,})"
$PY "$here/compare_results.py" "$tmp/ess_s.h5" "$tmp/ref_s.h5"
echo "compute matches reference: ok"
