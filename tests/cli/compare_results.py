#!/usr/bin/python3
"""compare_results.py ESS.h5 REF.h5: tolerance-ESS identical away from ties (1e-9 relative of the
threshold), entropy-ESS within 1e-8 relative; TSS and indices equal; both files hold the same
layers, at least one. Exit 1 on any difference."""
import sys

import h5py
import numpy as np

ess, ref = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
bad = 0
names_e, names_r = set(ess["layers"]) if "layers" in ess else set(), set(ref["layers"]) if "layers" in ref else set()
if names_e != names_r or not names_r:
    print(f"FAIL: layers differ or are missing: only in {sys.argv[1]}: {sorted(names_e - names_r)}, "
          f"only in {sys.argv[2]}: {sorted(names_r - names_e)}, in both: {len(names_e & names_r)}")
    sys.exit(1)
for name, r in ref["layers"].items():
    e = ess["layers"][name]
    te, tr = e["tolerance_ess"][...], r["tolerance_ess"][...]
    tie = r["threshold_margin"][...] < 1e-9
    diff = (te != tr) & ~tie
    ent_e, ent_r = e["entropy_ess"][...], r["entropy_ess"][...]
    rel = np.abs(ent_e - ent_r) / np.maximum(np.abs(ent_r), 1e-300)
    ok_tss = np.array_equal(e["tss"][...], r["tss"][...])
    ok = not diff.any() and (rel <= 1e-8).all() and ok_tss and np.array_equal(e["indices"][...], r["indices"][...])
    print(f"{name:12s} engine={e.attrs['engine']:10s} tolESS mismatches={int(diff.sum())} ties={int(tie.sum())} "
          f"max entropy rel err={rel.max():.1e} tss_equal={ok_tss} {'ok' if ok else 'FAIL'}")
    bad += not ok
sys.exit(1 if bad else 0)
