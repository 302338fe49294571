#!/usr/bin/env bash
# The plan-vs-damage finding (docs/findings.md §4, data/findings/plan_check.json) recomputes from a
# shipped model: for data/checkpoints/mqar-llama on its MQAR batch (kv 8, len 64, n 32, seed 12345),
# `ess analyze --students` gives the stored predicted errors of three patterns, and replacing one
# layer's attention by each pattern's student in PyTorch gives the stored damage (Δloss, accuracy
# drop). The unmodified model's PyTorch accuracy equals `ess analyze`'s.
set -euo pipefail
ESS=$(realpath "$1")
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$root/data/findings/plan_check.json" ] || { echo "SKIP: no data/findings/plan_check.json"; exit 77; }
$PY -c "import torch, h5py, scipy" 2>/dev/null || { echo "SKIP: torch / h5py / scipy missing"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

$PY - "$ESS" "$root" "$tmp" <<'PYEOF'
import json
import os
import sys

ess, root, tmp = sys.argv[1:4]
sys.path.insert(0, os.path.join(root, "tools", "reference"))
import torch  # noqa: E402
import plan_check  # noqa: E402

torch.set_num_threads(1)
shipped = json.load(open(os.path.join(root, "data", "findings", "plan_check.json")))
assert shipped["n"] == 32 and shipped["seed"] == plan_check.SEED
want = {(p["layer"], p["pattern"]): p for p in shipped["points"] if p["model"] == "mqar-llama"}
plan_check.STUDENTS = "window=8;sinks=4;topk=4;ess=none"  # a subset of the shipped grid
name, ckpt, kv, length = next(m for m in plan_check.shipped_models() if m[0] == "mqar-llama")
info, points = plan_check.check_model(ess, name, ckpt, kv, length, 32, tmp)
assert abs(info["accuracy_ess"] - info["accuracy_torch"]) < 1e-12, info
got = {(p["layer"], p["pattern"]) for p in points}
assert got == {(l, q) for l in (0, 1) for q in ("window=8", "window=8+sinks=4", "topk=4")}, got
for p in points:
    w = want[(p["layer"], p["pattern"])]
    for k in ("masked_error", "renormalized_error", "operator_masked_error"):
        assert abs(p[k] - w[k]) <= 1e-9 * max(1, abs(w[k])), (p["layer"], p["pattern"], k, p[k], w[k])
    for k in ("renormalized_delta_loss", "masked_delta_loss"):
        assert abs(p[k] - w[k]) <= 1e-4 * max(1, abs(w[k])), (p["layer"], p["pattern"], k, p[k], w[k])
    for k in ("renormalized_accuracy_drop", "masked_accuracy_drop"):
        assert abs(p[k] - w[k]) <= 2.5 / 768, (p["layer"], p["pattern"], k, p[k], w[k])  # ≤ 2 of 768 queries flip
# The finding in one line: the retrieval layer (1) is hurt far more by a window of 8 than layer 0.
d = {(p["layer"], p["pattern"]): p["renormalized_delta_loss"] for p in points}
assert d[(1, "window=8")] > 1.0 > 0.1 > d[(0, "window=8")], d
print("ok: plan_check points of mqar-llama recompute (predicted errors exactly, damage within 1e-4)")
PYEOF
