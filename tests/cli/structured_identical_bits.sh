#!/usr/bin/env bash
# The structured engine gives byte-identical results whatever the instruction set its SIMD kernels
# run on (AVX-512, AVX2, SSE2), the number of threads (1, or more than the channels: blocks cut
# into chunks) and the grouping of channels into SIMD packs.
set -euo pipefail
ESS=$1
PY=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
$PY -c "import h5py, numpy" 2>/dev/null || { echo "skip: needs numpy and h5py"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$PY "$here/make_random_ops.py" "$tmp/all.h5" 5
# Keep the families with a realization (the structured engine refuses the others).
$PY - "$tmp/all.h5" "$tmp/ops.h5" <<'PYEOF'
import sys, h5py
with h5py.File(sys.argv[1]) as f, h5py.File(sys.argv[2], "w") as g:
    for k, v in f.attrs.items(): g.attrs[k] = v
    for name, grp in f["layers"].items():
        if grp.attrs["family"] not in ("dense", "softmax_attention"):
            f.copy(grp, g, f"layers/{name}")
PYEOF
run() { "$ESS" compute "$tmp/ops.h5" -o "$tmp/$1.h5" --engine structured --keep-sigma 3 --quiet "${@:2}" >/dev/null; }
# The reference runs the best kernels the CPU has (AVX-512, else AVX2, else SSE2); each lower
# instruction set the CPU has is forced and compared with it. A CPU without AVX-512 cannot check
# those kernels here (the unit tests' lane-kernel cases say the same); the summary names what ran.
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { [[ " $flags " == *" $1 "* ]]; }
others=(sse2)
if has avx512f && has avx512dq; then
  best=avx512
  others+=(avx2)
elif has avx2; then
  best=avx2
else
  best=sse2
  others=()
fi
run ref --threads 1
for isa in "${others[@]}"; do ESS_LANES_ISA=$isa run "$isa" --threads 1; done
run threads --threads 7
$PY - "$tmp" "$best" "${others[@]}" <<'PYEOF'
import sys, h5py, numpy as np
d, best, others = sys.argv[1], sys.argv[2], sys.argv[3:]
print(f"reference: {best} kernels (the best this CPU has); compared: {', '.join(others) or 'no other instruction set'}"
      f"{'' if best == 'avx512' else '; AVX-512 not checked (this CPU lacks it)'}")
ref = h5py.File(f"{d}/ref.h5")
bad = 0
for other in (*others, "threads"):
    o = h5py.File(f"{d}/{other}.h5")
    for name, r in ref["layers"].items():
        for ds in r:
            a, b = r[ds][...], o["layers"][name][ds][...]
            if a.tobytes() != b.tobytes():
                print(f"{other}: layer {name} dataset {ds} differs")
                bad += 1
print("structured results identical across instruction sets and threads" if not bad else f"{bad} differences")
sys.exit(1 if bad else 0)
PYEOF
