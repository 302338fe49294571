#!/usr/bin/python3
"""esslib_matches_diagnose.py ESS RESULTS.h5...: the notebooks' helpers (notebooks/esslib.py) give the
same per-layer verdict, utilization and channel counts as `ess diagnose --format json`, and the same
tails and recommended state as `ess compress --format json`, and the same per-position ESS and loss
as `ess report --per-position --format json`, for both metrics. Exit 1 on any
difference."""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "notebooks"))
import esslib  # noqa: E402

ess, files = sys.argv[1], sys.argv[2:]
bad = 0
for path in files:
    layers = esslib.load_layers(path)
    for metric in ("tolerance", "entropy"):
        out = subprocess.run([ess, "diagnose", path, "--format", "json", "--metric", metric],
                             check=True, capture_output=True, text=True).stdout
        ref = {d["name"]: d for d in json.loads(out)["layers"]}
        for d in layers:
            r = ref[d["name"]]
            cls = esslib.classify(d, metric)
            counts = {k: int((cls == k).sum()) for k in ("saturated", "healthy", "collapsed", "dead")}
            if (cls == "unmeasured").any():  # (diagnose lists it only where there are some)
                counts["unmeasured"] = int((cls == "unmeasured").sum())
            u = esslib.layer_utilization(d, metric)
            ok = (esslib.verdict(cls) == r["verdict"] and counts == r["channels"]
                  and abs(u - r["utilization"]) <= 1e-9 * max(1.0, abs(u)))
            if not ok:
                print(f"FAIL {path} {metric} {d['name']}: esslib {esslib.verdict(cls)} {counts} {u:.10f} "
                      f"vs diagnose {r['verdict']} {r['channels']} {r['utilization']:.10f}")
            bad += not ok
    if all("sigma" in d for d in layers):
        K = min(int(d["sigma"].shape[-1]) for d in layers)
        states = [s for s in (1, 2, 4, 8, 16, 32) if s <= K]
        out = subprocess.run([ess, "compress", path, "--format", "json", "--state", ",".join(map(str, states))],
                             check=True, capture_output=True, text=True).stdout
        ref = {d["name"]: d for d in json.loads(out)["layers"]}
        for d in layers:
            rows = esslib.tails(d, states)
            rr = ref[d["name"]]
            for row, cr in zip(rows, rr["targets"], strict=True):
                ok = cr["state"] == row["state"] and all(
                    np.isclose(cr[k], row[k], rtol=1e-8, atol=1e-12) for k in ("mean_tail", "max_tail", "frac_exceeding"))
                if not ok:
                    print(f"FAIL {path} compress {d['name']} state {row['state']}: esslib {row} vs ess {cr}")
                bad += not ok
            if esslib.recommended_state(rows, 0.01) != rr["recommended_state"]:
                print(f"FAIL {path} compress {d['name']}: recommended state {esslib.recommended_state(rows, 0.01)} "
                      f"vs ess {rr['recommended_state']}")
                bad += 1
    for metric in ("tolerance", "entropy"):  # per-position ESS and loss: esslib vs ess report --per-position
        out = subprocess.run([ess, "report", path, "--per-position", "--metric", metric, "--format", "json"],
                             check=True, capture_output=True, text=True).stdout
        rep, pp = json.loads(out), esslib.per_position(path, metric)
        nan = float("nan")
        got = np.array([[r["loss"] if r["loss"] is not None else nan] +
                        [e if e is not None else nan for e in r["ess"]] for r in rep["positions"]])
        want = np.column_stack([pp["loss"], pp["ess"].T])
        ok = (rep["layers"] == pp["layers"] and [r["i"] for r in rep["positions"]] == list(pp["i"])
              and got.shape == want.shape and np.allclose(got, want, rtol=1e-12, atol=0, equal_nan=True))
        if not ok:
            print(f"FAIL {path} report --per-position --metric {metric}: esslib differs")
        bad += not ok
    print(f"{path}: esslib {'matches' if not bad else 'DIFFERS from'} ess diagnose/compress/report --per-position")
sys.exit(1 if bad else 0)
