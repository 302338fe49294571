#!/usr/bin/python3
"""same_bytes.py WHAT A.h5 B.h5 [WHAT A.h5 B.h5 …]: each pair of results files holds the same
members, every dataset with the same dtype, shape and bytes, and every attribute equal except the
timings (`seconds`), the root's `created` and `command_line`. Prints ok or FAIL per pair (at most
20 differences each); exit 1 if any pair differs or holds no dataset."""
import sys

import h5py
import numpy as np

SKIP = {"seconds", "created", "command_line"}


def compare(a, b):
    bad, n = [], [0]

    def attrs(x, y, where):
        if set(x.attrs) != set(y.attrs):
            bad.append(f"{where}: attributes {sorted(x.attrs)} vs {sorted(y.attrs)}")
        for k in x.attrs:
            if k in SKIP or k not in y.attrs:
                continue
            u, v = np.asarray(x.attrs[k]), np.asarray(y.attrs[k])
            if u.dtype != v.dtype or u.tobytes() != v.tobytes():
                bad.append(f"{where}: attribute {k}: {x.attrs[k]!r} vs {y.attrs[k]!r}")

    def walk(x, y, where):
        attrs(x, y, where)
        if set(x) != set(y):
            bad.append(f"{where}: members {sorted(x)} vs {sorted(y)}")
        for k in x:
            if k not in y:
                continue
            if isinstance(x[k], h5py.Group):
                walk(x[k], y[k], f"{where}{k}/")
            else:
                attrs(x[k], y[k], f"{where}{k}")
                u, v = np.asarray(x[k][()]), np.asarray(y[k][()])
                n[0] += 1
                if u.dtype != v.dtype or u.shape != v.shape or u.tobytes() != v.tobytes():
                    bad.append(f"{where}{k}: values differ")

    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        walk(fa, fb, "/")
    return bad, n[0]


failed = 0
args = sys.argv[1:]
for k in range(0, len(args), 3):
    what, one, other = args[k:k + 3]
    bad, n = compare(one, other)
    if bad or n == 0:
        failed += 1
        print(f"FAIL: {what}: the files differ ({n} datasets):")
        for m in bad[:20]:
            print("  " + m)
    else:
        print(f"ok: {what}: the same bytes ({n} datasets, every attribute but timings)")
sys.exit(1 if failed else 0)
