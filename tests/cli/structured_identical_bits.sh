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
run ref --threads 1
ESS_LANES_ISA=sse2 run sse2 --threads 1
ESS_LANES_ISA=avx2 run avx2 --threads 1
run threads --threads 7
$PY - "$tmp" <<'PYEOF'
import sys, h5py, numpy as np
d = sys.argv[1]
ref = h5py.File(f"{d}/ref.h5")
bad = 0
for other in ("sse2", "avx2", "threads"):
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
