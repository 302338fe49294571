#!/usr/bin/env bash
# Sparse students and ess plan (issue 14).
#  1. Student errors and restricted ESS stored by ess compute (sliding window, window + sinks,
#     top-k; masked and renormalized) equal an independent NumPy computation on the dense T of
#     softmax-attention heads (ess_writer.dense_T), through both ESS paths (sweep over every block,
#     dense SVDs of a sparse index set) and the `layer` threshold mode.
#  2. ess plan on synthetic heads with known structure gets the plan the structure implies:
#       band      uniform-ish attention over the last 24 keys (rank 23)  → a window ≥ 24
#       sinkband  half the mass on 4 sink tokens, half on the last 16   → window 16 + 4 sinks
#       lowrank   diffuse rows of rank 2 over the whole past              → a state ≤ 4
#       random    spiky random attention over the whole past (full rank) → full attention
#     with the errors of the chosen candidates recomputed (window: mean of the stored block
#     errors; state: Eckart–Young tail from a NumPy SVD of every block) and the summary's counts
#     and memory accounting checked.
#  3. Files without students or singular values stay readable (plan says what it left out);
#     --students off writes no group; bad options exit 2, bad files 3.
#  4. The memory of head layers counts the head_dim ess analyze records (tiny-llama: 16), or
#     --d-head, or 64 with a note when the file has none.
set -euo pipefail
ESS=$1
PY=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH="$here/../../tools/python${PYTHONPATH:+:$PYTHONPATH}"

# --- 1. students against NumPy -------------------------------------------------------------------
$PY - "$tmp/attn.h5" <<'PYEOF'
import sys
import numpy as np
from ess_writer import OperatorFileWriter

rng = np.random.default_rng(14)
B, H, L, d = 2, 2, 48, 8
with OperatorFileWriter(sys.argv[1]) as w:
    w.add_softmax_attention("attn", rng.standard_normal((B, H, L, d)) * 1.5, rng.standard_normal((B, H, L, d)),
                            layer_index=0)
    w.add_softmax_attention("attn_win", rng.standard_normal((B, H, L, d)), rng.standard_normal((B, H, L, d)),
                            window=20, layer_index=1)
    T = np.tril(rng.standard_normal((1, 2, L, L)))
    w.add_dense("dense", T, layer_index=2)
PYEOF

spec='window=4,16;sinks=2;topk=8'
# ess=all: the top-k ESS through the sweep (every block) and dense SVDs (a sparse index set);
# default ess=auto in the layer-mode run: windows only, top-k marked −2 (not measured).
"$ESS" compute "$tmp/attn.h5" -o "$tmp/all.h5" --students "$spec;ess=all" --quiet >/dev/null
"$ESS" compute "$tmp/attn.h5" -o "$tmp/sparse.h5" --students "$spec;ess=all" --indices 1:47:5 --quiet >/dev/null
"$ESS" compute "$tmp/attn.h5" -o "$tmp/layer.h5" --students "$spec" --tol-mode layer --tol 1e-2 --quiet >/dev/null

$PY - "$tmp/attn.h5" "$tmp/all.h5" "$tmp/sparse.h5" "$tmp/layer.h5" <<'PYEOF'
import sys
import h5py
import numpy as np
from ess_writer import dense_T, read_layer

ops, files = sys.argv[1], sys.argv[2:]
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def pattern_mask(T, window, sinks, topk):
    L = T.shape[0]
    r, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    causal = j <= r
    if topk > 0:
        keep = np.zeros((L, L), bool)
        for i in range(L):
            js = np.arange(i + 1)
            # largest |T| first, ties: the more recent key
            order = np.lexsort((-js, -np.abs(T[i, :i + 1])))
            keep[i, js[order[:topk]]] = True
        return keep
    return causal & ((r - j < window) | (j < sinks))


def students(T, window, sinks, topk):
    keep = pattern_mask(T, window, sinks, topk)
    M = np.where(keep, T, 0.0)
    row_all, row_in = T.sum(1), M.sum(1)
    f = np.where(row_in != 0, row_all / np.where(row_in != 0, row_in, 1), 0.0)
    return M, M * f[:, None]


def rel(X, Y):
    n = np.linalg.norm(X)
    return np.linalg.norm(X - Y) / n if n > 0 else 0.0


teachers = {}
with h5py.File(ops) as f:
    for name, g in f["layers"].items():
        fam, kw = read_layer(g)
        teachers[name] = dense_T(fam, **kw)

checked = 0
for path in files:
    with h5py.File(path) as f:
        check("students" not in f["layers/dense"], f"{path}: a dense layer got students without families=dense")
        for name in ("attn", "attn_win"):
            g = f["layers"][name]
            s = g["students"]
            tol, mode = float(g.attrs["tol"]), g.attrs["tol_mode"]
            if isinstance(mode, bytes):
                mode = mode.decode()
            idx = g["indices"][...]
            pats = list(zip(s["window"][...], s["sinks"][...], s["topk"][...]))
            want = [(4, 0, 0), (4, 2, 0), (16, 0, 0), (16, 2, 0), (0, 0, 8)]
            check(pats == want, f"{path}:{name}: patterns {pats}, expected {want}")
            me, re_ = s["masked_error"][...], s["renormalized_error"][...]
            ome, ore = s["operator_masked_error"][...], s["operator_renormalized_error"][...]
            tess, eess = s["tolerance_ess"][...], s["entropy_ess"][...]
            lmax = g["layer_sigma_max"][...]
            Tall = teachers[name]
            for p, (w, sk, k) in enumerate(pats):
                for b in range(Tall.shape[0]):
                    for c in range(Tall.shape[1]):
                        T = Tall[b, c]
                        M, S = students(T, w, sk, k)
                        check(np.isclose(ome[p, b, c], rel(T, M), rtol=1e-9, atol=1e-13),
                              f"{path}:{name} p{p} b{b} c{c}: operator masked {ome[p, b, c]} vs {rel(T, M)}")
                        check(np.isclose(ore[p, b, c], rel(T, S), rtol=1e-9, atol=1e-13),
                              f"{path}:{name} p{p} b{b} c{c}: operator renormalized {ore[p, b, c]} vs {rel(T, S)}")
                        for pos, i in enumerate(idx):
                            H, HM, HS = T[i:, :i], M[i:, :i], S[i:, :i]
                            for got, ref, what in ((me[p, b, c, pos], rel(H, HM), "masked"),
                                                   (re_[p, b, c, pos], rel(H, HS), "renormalized")):
                                check(np.isclose(got, ref, rtol=1e-8, atol=1e-12),
                                      f"{path}:{name} {pats[p]} b{b} c{c} i{i}: {what} {got} vs {ref}")
                            if tess[p, b, c, pos] == -2:
                                check(k > 0 and path.endswith("layer.h5") and np.isnan(eess[p, b, c, pos]),
                                      f"{path}:{name} {pats[p]}: ESS not measured")
                                continue
                            sv = np.linalg.svd(HM, compute_uv=False)
                            thr = {"absolute": tol, "block": tol * (sv[0] if sv.size else 0),
                                   "layer": tol * lmax[b]}[mode]
                            near = np.any(np.abs(sv - thr) <= 1e-9 * max(1.0, thr))
                            if not near:
                                check(tess[p, b, c, pos] == int(np.sum(sv > thr)),
                                      f"{path}:{name} {pats[p]} b{b} c{c} i{i}: tolerance-ESS {tess[p, b, c, pos]} vs "
                                      f"{int(np.sum(sv > thr))}")
                            tot = sv.sum()
                            ent = 0.0
                            if tot > 0:
                                pk = sv[sv > 0] / tot
                                ent = float(np.exp(-(pk * np.log(pk)).sum()))
                            check(np.isclose(eess[p, b, c, pos], ent, rtol=1e-6, atol=1e-9),
                                  f"{path}:{name} {pats[p]} b{b} c{c} i{i}: entropy-ESS {eess[p, b, c, pos]} vs {ent}")
                            checked += 1
            # the renormalized student is never closer than the masked one (masked = projection onto P)
            check(np.all(re_ >= me - 1e-12), f"{path}:{name}: a renormalized error below the masked one")
for m in failures[:20]:
    print("FAIL:", m)
if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print(f"students: {checked} blocks match NumPy")
PYEOF

# --- 2. plan on synthetic heads --------------------------------------------------------------------
$PY - "$tmp/heads.h5" "$tmp/heads.npz" <<'PYEOF'
import sys
import numpy as np
from ess_writer import OperatorFileWriter

rng = np.random.default_rng(7)
L, C = 128, 2
r = np.arange(L)[:, None]
j = np.arange(L)[None, :]
causal = j <= r


def rows(logits, allowed):  # softmax over the allowed keys (a row with none: NaN)
    z = np.where(allowed, logits, -np.inf)
    with np.errstate(invalid="ignore"):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)


def band(c):  # random softmax over the last 24 keys
    return rows(rng.standard_normal((L, L)), causal & (r - j < 24))


def sinkband(c):  # half the mass on the 4 sinks, half on the last 16 keys (shared tokens: all of it)
    sinks = causal & (j < 4)
    local = causal & (r - j < 16) & ~sinks
    T = 0.5 * rows(rng.standard_normal((L, L)), sinks) + 0.5 * np.nan_to_num(rows(rng.standard_normal((L, L)), local))
    return T / T.sum(1, keepdims=True)


def lowrank(c):  # rows ∝ v1_j + a_r v2_j over the whole past: rank 2 blocks, diffuse
    v1, v2 = rng.uniform(0.5, 1.5, L), rng.uniform(0.0, 1.0, L)
    a = rng.uniform(0.0, 2.0, L)
    T = np.where(causal, v1[None, :] + a[:, None] * v2[None, :], 0.0)
    return T / T.sum(1, keepdims=True)


def random(c):  # spiky random attention over the whole past
    return rows(4.0 * rng.standard_normal((L, L)), causal)


heads = {}
with OperatorFileWriter(sys.argv[1]) as w:
    for k, (name, make) in enumerate([("band", band), ("sinkband", sinkband), ("lowrank", lowrank),
                                      ("random", random)]):
        T = np.stack([make(c) for c in range(C)])[None]
        heads[name] = T
        w.add_dense(name, T, layer_index=k)
np.savez(sys.argv[2], **heads)
PYEOF

"$ESS" compute "$tmp/heads.h5" -o "$tmp/heads_res.h5" --keep-sigma 64 --quiet \
  --students 'window=8,16,32,64;sinks=4;topk=16;families=dense' >/dev/null
"$ESS" plan "$tmp/heads_res.h5" --format json >"$tmp/plan.json"
"$ESS" plan "$tmp/heads_res.h5" --candidates >"$tmp/plan.txt"
"$ESS" plan "$tmp/heads_res.h5" --format markdown >"$tmp/plan.md"
grep -q "summary: 4 layer(s): 1 kept, 2 window, 1 state; hybrid 3:1" "$tmp/plan.txt" ||
  { echo "FAIL: text summary"; cat "$tmp/plan.txt"; exit 1; }
grep -q '^| ' "$tmp/plan.md" || { echo "FAIL: markdown table"; exit 1; }

$PY - "$tmp/plan.json" "$tmp/heads_res.h5" "$tmp/heads.npz" <<'PYEOF'
import json
import sys
import h5py
import numpy as np

plan = json.load(open(sys.argv[1]))
heads = np.load(sys.argv[3])
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


layers = {l["name"]: l for l in plan["layers"]}
rec = {n: l["recommended"] for n, l in layers.items()}
check(rec["band"]["kind"] == "window" and rec["band"]["size"] >= 24 and rec["band"]["sinks"] == 0,
      f"band: {rec['band']}")
check(rec["sinkband"]["kind"] == "window" and rec["sinkband"]["size"] >= 16 and rec["sinkband"]["sinks"] == 4,
      f"sinkband: {rec['sinkband']}")
check(rec["lowrank"]["kind"] == "state" and rec["lowrank"]["size"] <= 4, f"lowrank: {rec['lowrank']}")
check(rec["random"]["kind"] == "full" and rec["random"]["size"] == 128, f"random: {rec['random']}")
E = plan["max_error"]
with h5py.File(sys.argv[2]) as f:
    for name, l in layers.items():
        g = f["layers"][name]
        s = g["students"]
        pats = list(zip(s["window"][...], s["sinks"][...], s["topk"][...]))
        T = heads[name][0]
        idx = g["indices"][...]
        for cand in l["candidates"]:
            check(cand["qualifies"] == (cand["error"] <= E), f"{name}: qualifies flag {cand}")
            if cand["kind"] == "window":
                p = pats.index((cand["size"], cand["sinks"], 0))
                for key, ds in (("masked_error", "masked_error"), ("renormalized_error", "renormalized_error")):
                    ref = s[ds][p].mean()
                    check(np.isclose(cand[key], ref, rtol=1e-12), f"{name} {cand}: {key} vs {ref}")
                check(cand["error"] == cand["masked_error"], f"{name}: default window error is the masked one")
                check(cand["memory_per_sequence"] == 2 * (cand["size"] + cand["sinks"]), f"{name}: memory {cand}")
            elif cand["kind"] == "state":
                N = cand["size"]
                tails = []
                for c in range(T.shape[0]):
                    for i in idx:
                        sv = np.linalg.svd(T[c, i:, :i], compute_uv=False)
                        tails.append(np.sqrt((sv[N:] ** 2).sum()) / np.sqrt((sv ** 2).sum()))
                check(np.isclose(cand["error"], np.mean(tails), rtol=1e-4, atol=1e-7),
                      f"{name}: state {N} error {cand['error']} vs NumPy {np.mean(tails)}")
                check(cand["memory_per_sequence"] == N and cand["cost"] == 4 * N, f"{name}: state memory {cand}")
            else:
                check(cand["memory_per_sequence"] == 2 * 128 and cand["memory_per_sequence_long"] == 2 * 512,
                      f"{name}: full memory {cand}")
                check(np.isclose(cand["memory_per_token"], 2.0), f"{name}: full memory per token {cand}")
sm = plan["summary"]
check((sm["layers"], sm["full"], sm["window"], sm["state"]) == (4, 1, 2, 1), f"summary counts {sm}")
check(sm["hybrid"] == "3:1" and sm["hybrid_ratio"] == 3.0 and sm["long_seq_len"] == 512, f"summary {sm}")
orig = sum(2 * 128 * 2 for _ in layers)
planned = sum(l["recommended"]["memory_per_sequence"] * l["channels"] for l in layers.values())
m = sm["memory"]
check(m["original_per_sequence"] == orig and np.isclose(m["planned_per_sequence"], planned),
      f"summary memory {m} (expected {orig} → {planned})")
check(np.isclose(m["saved_fraction"], (orig - planned) / orig), f"saved fraction {m}")
check(m["original_per_sequence_long"] == 4 * orig, f"long memory {m}")
for msg in failures:
    print("FAIL:", msg)
if failures:
    sys.exit(1)
print("plan:", {n: (r["kind"], r["size"], r.get("sinks", 0)) for n, r in rec.items()})
PYEOF

# A plan asking for renormalized windows is at least as strict (renormalized ≥ masked).
"$ESS" plan "$tmp/heads_res.h5" --format json --window-error renormalized >"$tmp/plan_r.json"
$PY - "$tmp/plan_r.json" <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1]))
assert p["window_error"] == "renormalized"
for l in p["layers"]:
    for c in l["candidates"]:
        if c["kind"] == "window":
            assert c["error"] == c["renormalized_error"] >= c["masked_error"] - 1e-15, c
print("renormalized plan ok")
PYEOF

# --- 3. old files, off switch, errors -------------------------------------------------------------
"$ESS" compute "$tmp/heads.h5" -o "$tmp/nostudents.h5" --students off --quiet >/dev/null
$PY - "$tmp/nostudents.h5" <<'PYEOF'
import sys, h5py
with h5py.File(sys.argv[1]) as f:
    assert not any("students" in g for g in f["layers"].values()), "--students off wrote students"
PYEOF
"$ESS" plan "$tmp/nostudents.h5" --format json >"$tmp/plan_none.json"
$PY - "$tmp/plan_none.json" <<'PYEOF'
import json, sys
p = json.load(open(sys.argv[1]))
for l in p["layers"]:
    assert [c["kind"] for c in l["candidates"]] == ["full"], l["candidates"]
    assert any("sparse students" in n for n in l["notes"]) and any("--keep-sigma" in n for n in l["notes"]), l["notes"]
    assert l["recommended"]["kind"] == "full"
print("plan without students or sigma: full everywhere, notes given")
PYEOF
"$ESS" report "$tmp/heads_res.h5" >/dev/null
"$ESS" compress "$tmp/heads_res.h5" --state 2,8 >/dev/null
# compress reports the stored students (no --state needed when there are some)
"$ESS" compress "$tmp/heads_res.h5" --format json >"$tmp/compress.json"
$PY - "$tmp/compress.json" "$tmp/heads_res.h5" <<'PYEOF'
import json, sys
import h5py
import numpy as np
c = json.load(open(sys.argv[1]))
with h5py.File(sys.argv[2]) as f:
    for l in c["layers"]:
        s = f["layers"][l["name"]]["students"]
        assert [t["pattern"] for t in l["students"]][:2] == ["window=8", "window=8+sinks=4"], l["students"]
        assert l["students"][-1]["pattern"] == "topk=16"
        for p, t in enumerate(l["students"]):
            assert np.isclose(t["mean_masked_error"], s["masked_error"][p].mean(), rtol=1e-12), t
            assert np.isclose(t["max_renormalized_error"], s["renormalized_error"][p].max(), rtol=1e-12), t
            assert np.isclose(t["operator_masked_error"], s["operator_masked_error"][p].mean(), rtol=1e-12), t
            te = s["tolerance_ess"][p]
            if t["topk"] > 0 or t["window"] + t["sinks"] > 64:  # ess=auto: not measured (−2) → null
                assert (te == -2).all() and t["mean_tolerance_ess"] is None, t
            else:
                assert (te >= 0).all() and np.isclose(t["mean_tolerance_ess"], te.mean(), rtol=1e-12), t
print("compress students ok")
PYEOF

# --- 4. the head dimension memory counts -------------------------------------------------------
# ess analyze records each head layer's head_dim (tiny-llama: 16, not the 64 plan once assumed);
# plan counts it, --d-head overrides it, and a file without it gets 64 with a note.
root=$(cd "$here/../.." && pwd)
ck="$root/data/checkpoints/tiny-llama"
"$ESS" analyze "$ck" --tokens "$ck/tokens.txt" -o "$tmp/llama.h5" --quiet >/dev/null
"$ESS" plan "$tmp/llama.h5" --format json >"$tmp/plan_file.json"
"$ESS" plan "$tmp/llama.h5" --format json --d-head 40 >"$tmp/plan_flag.json"
"$ESS" plan "$tmp/llama.h5" >"$tmp/plan_file.txt"
$PY -c "import h5py,sys; f=h5py.File(sys.argv[1],'a'); [g.attrs.__delitem__('head_dim') for g in f['layers'].values()]" "$tmp/llama.h5"
"$ESS" plan "$tmp/llama.h5" --format json >"$tmp/plan_old.json"
"$ESS" plan "$tmp/llama.h5" >"$tmp/plan_old.txt"
$PY - "$tmp/plan_file.json" "$tmp/plan_flag.json" "$tmp/plan_old.json" "$ck/config.json" <<'PYEOF'
import json, sys
files = [json.load(open(p)) for p in sys.argv[1:4]]
cfg = json.load(open(sys.argv[4]))
want = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
assert want != 64, "the checkpoint must not have the assumed d_head"
for plan, d, src in zip(files, (want, 40, 64), ("file", "--d-head", "assumed")):
    assert plan["layers"], "no layers"
    for l in plan["layers"]:
        assert l["channel_kind"] == "head" and l["d_head"] == d and l["d_head_source"] == src, (src, l["name"], l["d_head"])
        full = l["candidates"][0]
        assert full["kind"] == "full" and full["memory_per_sequence"] == 2 * l["seq_len"] * d, (src, full)
        for c in l["candidates"]:
            if c["kind"] == "window":
                assert c["memory_per_sequence"] == 2 * (c["size"] + c["sinks"]) * d, (src, c)
        assumed = [n for n in l["notes"] if "records no head dimension" in n]
        assert bool(assumed) == (src == "assumed"), (src, l["notes"])
assert files[0]["d_head"] == 0 and files[1]["d_head"] == 40
print("plan counts the recorded head dimension")
PYEOF
grep -q "d_head: each head layer's head_dim from the file" "$tmp/plan_file.txt" || { echo "FAIL: plan header"; cat "$tmp/plan_file.txt"; exit 1; }
grep -q " 64? " "$tmp/plan_old.txt" || { echo "FAIL: plan does not mark the assumed d_head"; cat "$tmp/plan_old.txt"; exit 1; }

expect() {  # expect CODE command...
  local want=$1
  shift
  set +e
  "$@" >/dev/null 2>"$tmp/err"
  local got=$?
  set -e
  if [ "$got" != "$want" ]; then
    echo "FAIL: '$*' exited $got, expected $want"
    cat "$tmp/err"
    exit 1
  fi
}
expect 2 "$ESS" plan "$tmp/heads_res.h5" --max-error -1
expect 2 "$ESS" plan "$tmp/heads_res.h5" --window-error foo
expect 2 "$ESS" plan "$tmp/heads_res.h5" --states 0,4
expect 2 "$ESS" plan "$tmp/heads_res.h5" --state-weight 0
expect 2 "$ESS" plan "$tmp/heads_res.h5" --d-head -1
expect 3 "$ESS" plan "$tmp/missing.h5"
expect 2 "$ESS" compress "$tmp/nostudents.h5"
expect 2 "$ESS" compute "$tmp/heads.h5" -o "$tmp/x.h5" --students 'window=x'
expect 2 "$ESS" compute "$tmp/heads.h5" -o "$tmp/x.h5" --students 'colour=4'
[ ! -e "$tmp/x.h5" ] || { echo "FAIL: a failed compute left $tmp/x.h5"; exit 1; }
# A students group with a wrong shape is refused, naming the dataset.
cp "$tmp/heads_res.h5" "$tmp/bad.h5"
$PY - "$tmp/bad.h5" <<'PYEOF'
import sys, h5py
with h5py.File(sys.argv[1], "a") as f:
    s = f["layers/band/students"]
    del s["masked_error"]
    s["masked_error"] = [1.0, 2.0]
PYEOF
expect 3 "$ESS" plan "$tmp/bad.h5"
grep -q "masked_error" "$tmp/err" || { echo "FAIL: message does not name the dataset"; cat "$tmp/err"; exit 1; }
echo "plan.sh: ok"
