#!/usr/bin/env bash
# `ess analyze` writes the same bytes in every dataset whatever --threads is (1, 2, 3): the forward
# pass's products and heads are cut into pieces whose shapes do not depend on the thread count
# (libess/parallel.h). Before 2026-12-03 OpenBLAS threaded each product itself and cut Mamba's
# x_proj (18 output columns) by its thread count: on 2 × 300 tokens, tiny-jamba's files from
# --threads 1 and 2 differed in the last bits of 23 datasets, and so did `ess analyze` against
# `mpirun -n 2 ess analyze` (one thread per rank). Checkpoints: the Mamba families (Mamba, the
# Jamba and Falcon-H1 hybrids) and a Llama, on inputs long enough for the BLAS to thread.
set -uo pipefail
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
$PY -c "import h5py, numpy" 2>/dev/null || { echo "skip: needs numpy and h5py"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# 2 rows × 300 token ids below 60 (every tiny checkpoint's vocabulary is larger).
$PY -c "
import random
random.seed(5)
print('\n'.join(' '.join(str(random.randrange(60)) for _ in range(300)) for _ in range(2)))" >"$tmp/tokens.txt"
for name in tiny-mamba tiny-jamba tiny-falcon-h1 tiny-llama; do
  d=$root/data/checkpoints/$name
  for t in 1 2 3; do
    "$ESS" analyze "$d" --tokens "$tmp/tokens.txt" -o "$tmp/$name.$t.h5" --threads "$t" --blocks 8 --quiet \
      >"$tmp/$name.$t.out" 2>&1 || { echo "FAIL: analyze $name --threads $t"; cat "$tmp/$name.$t.out"; fail=1; }
  done
  $PY - "$tmp/$name.1.h5" "$tmp/$name.2.h5" "$tmp/$name.3.h5" <<'PYEOF' || { echo "FAIL: $name: the files differ"; fail=1; }
import sys, h5py
files = [h5py.File(p, "r") for p in sys.argv[1:]]
count = bad = 0
def walk(groups, path):
    global count, bad
    names = [sorted(g.keys()) for g in groups]
    assert all(n == names[0] for n in names), (path, names)
    for k in names[0]:
        items = [g[k] for g in groups]
        if isinstance(items[0], h5py.Dataset):
            count += 1
            data = [x[...] for x in items]
            if any(d.dtype != data[0].dtype or d.shape != data[0].shape or d.tobytes() != data[0].tobytes()
                   for d in data[1:]):
                bad += 1
                print("  differs:", path + k)
        else:
            walk(items, path + k + "/")
walk(files, "/")
assert count > 0
print(sys.argv[1].split("/")[-1].split(".")[0], f"--threads 1, 2, 3: {count} datasets, {bad} differ")
sys.exit(1 if bad else 0)
PYEOF
done
[ $fail = 0 ] && echo "ok: the same bytes with 1, 2 and 3 threads"
exit $fail
