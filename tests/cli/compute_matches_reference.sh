#!/usr/bin/env bash
# ess compute (every engine, every threshold mode) agrees with the independent NumPy reference.
set -euo pipefail
ESS=$1
PY=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$PY "$here/make_random_ops.py" "$tmp/ops.h5" 3
for mode in absolute block layer; do
  tol=1e-3
  [ "$mode" != absolute ] && tol=1e-2
  $PY "$here/../../tools/python/ess_reference.py" "$tmp/ops.h5" -o "$tmp/ref_$mode.h5" --tol $tol --tol-mode $mode
  for engine in auto dense sweep; do
    echo "== mode $mode, engine $engine"
    "$ESS" compute "$tmp/ops.h5" -o "$tmp/ess.h5" --engine $engine --tol $tol --tol-mode $mode --quiet --threads 2 >/dev/null
    $PY "$here/compare_results.py" "$tmp/ess.h5" "$tmp/ref_$mode.h5"
  done
done
# structured engine on the structured families only: write a file without the dense/attention layers.
$PY - "$tmp/ops.h5" "$tmp/ops_structured.h5" <<'PYEOF'
import sys, h5py
src, dst = sys.argv[1], sys.argv[2]
with h5py.File(src) as f, h5py.File(dst, "w") as g:
    for k, v in f.attrs.items(): g.attrs[k] = v
    for name, grp in f["layers"].items():
        if grp.attrs["family"] not in ("dense", "softmax_attention"):
            f.copy(grp, g, f"layers/{name}")
PYEOF
$PY "$here/../../tools/python/ess_reference.py" "$tmp/ops_structured.h5" -o "$tmp/ref_s.h5"
"$ESS" compute "$tmp/ops_structured.h5" -o "$tmp/ess_s.h5" --engine structured --quiet >/dev/null
echo "== engine structured"
$PY "$here/compare_results.py" "$tmp/ess_s.h5" "$tmp/ref_s.h5"
echo "compute matches reference: ok"
