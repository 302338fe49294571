#!/usr/bin/python3
"""Issue 14 part 3: does `ess plan`'s predicted error rank the real damage of a sparse student?

    plan_check.py [--ess build/ess] [--n 32] [-o data/findings/plan_check.json] [--models NAME,...]

For every trained softmax-attention (Llama) model we ship — the zoo's `sa-*` entries and
data/checkpoints/mqar-llama — on its own MQAR batch (`ess mqar kv,len,n,seed=12345`):

1. `ess analyze CKPT --mqar SPEC --students STUDENTS --keep-sigma 64` (the students' errors per
   layer), then `ess plan R.h5 --format json --candidates` with `--window-error masked` and
   `renormalized` (the windows' predicted errors, the recommendation at several --max-error) and
   `ess compress R.h5 --format json` (every stored pattern, top-k included).
2. In PyTorch (zoo_models.HFModel, float32), one layer and one pattern at a time, the layer's
   attention probabilities of every head are replaced by the student's (docs/analysis.md "Sparse
   students"): *renormalized* = the softmax over the pattern's keys only (what a sliding-window /
   sink / top-k attention computes as a drop-in), *masked* = the full softmax zeroed outside the
   pattern. Patterns: window w (r − j < w), window w + s sinks (or j < s), top-k (the k largest
   probabilities of the row; ties: the more recent key).
3. Real damage on the same batch: Δloss (cross-entropy on the query positions) and the accuracy
   drop, against the unmodified model (whose accuracy must equal `ess analyze`'s).
4. Spearman rank correlations of the predicted error (mean block error, as `ess plan` reports it)
   with the damage, pooled over the (model, layer, pattern) points of the models that solve their
   task (accuracy ≥ 0.9: damage to a model that does not work means little), with 95% bootstrap
   intervals (2000 resamples of the points, seed 0); within each (model, layer); and per model.
Recurrent-state candidates (`state` N) are not checked: replacing attention by a state needs a
trained recurrent layer (finding 2, distillation), not an inference-time mask.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata, spearmanr

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import zoo  # noqa: E402
import zoo_models as zm  # noqa: E402
from st_io import load_checkpoint  # noqa: E402

STUDENTS = "window=2,4,8,16,32,64;sinks=4;topk=2,4,8,16,32;ess=none"
SEED = 12345
MAX_ERRORS = (0.05, 0.1, 0.2, 0.3)


def shipped_models():
    """(name, checkpoint dir, kv, len) of every softmax-attention MQAR model we ship."""
    out = []
    man = json.load(open(os.path.join(ROOT, "data", "zoo", "manifest.json")))
    for m in man["models"]:
        if m["family"] == "sa":
            out.append((m["name"], os.path.join(ROOT, "data", "zoo", m["dir"]), m["kv"], m["len"]))
    d = os.path.join(ROOT, "data", "checkpoints", "mqar-llama")
    if os.path.isdir(d):
        out.append(("mqar-llama", d, 8, 64))  # config ess_note: trained on MQAR kv=8, len=64
    return out


def pattern_mask(p, scores):
    """Boolean [.., L, L] of the keys pattern p keeps (within the causal triangle)."""
    L = scores.shape[-1]
    r = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    causal = j <= r
    if p["topk"]:
        # the k largest probabilities (= scores) of each row; ties: the more recent key first
        key = scores.double().masked_fill(~causal, float("-inf")) + j.double() * 1e-12
        idx = key.topk(min(p["topk"], L), -1).indices
        keep = torch.zeros_like(scores, dtype=torch.bool).scatter_(-1, idx, True)
        return keep & causal
    keep = (r - j) < p["window"] if p["window"] else torch.zeros(L, L, dtype=torch.bool)
    if p["sinks"]:
        keep = keep | (j < p["sinks"])
    return (keep & causal).expand_as(scores)


def query_metrics(logits, tgt):
    m = tgt >= 0
    loss = F.cross_entropy(logits[m].double(), tgt[m]).item()
    acc = (logits.argmax(-1)[m] == tgt[m]).double().mean().item()
    return loss, acc


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def bootstrap_spearman(x, y, n=2000, seed=0):
    x, y = np.asarray(x), np.asarray(y)
    if np.ptp(x) == 0 or np.ptp(y) == 0:  # a constant side: no rank correlation
        return {"spearman": None, "interval": [None, None], "points": int(len(x))}
    rho = spearmanr(x, y).correlation
    rng = np.random.default_rng(seed)
    bs = []  # n = 0: no interval
    if n:
        k = rng.integers(0, len(x), (n, len(x)))
        rx, ry = rankdata(x[k], axis=1), rankdata(y[k], axis=1)
        rx -= rx.mean(1, keepdims=True)
        ry -= ry.mean(1, keepdims=True)
        den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
        ok = den > 0  # resamples with a constant side have no rank correlation
        bs = list((rx * ry).sum(1)[ok] / den[ok])
    if not bs:
        return {"spearman": round(float(rho), 4), "interval": [None, None], "points": int(len(x))}
    lo, hi = np.percentile(bs, [2.5, 97.5])
    return {"spearman": round(float(rho), 4), "interval": [round(float(lo), 4), round(float(hi), 4)],
            "points": int(len(x))}


def check_model(ess, name, ckpt, kv, length, n, tmp):
    spec = f"kv={kv},len={length},n={n},seed={SEED}"
    res = os.path.join(tmp, name + ".h5")
    run([ess, "analyze", ckpt, "--mqar", spec, "--students", STUDENTS, "--keep-sigma", "64", "--quiet",
         "-o", res])
    plans = {w: json.loads(run([ess, "plan", res, "--format", "json", "--candidates", "--window-error", w]))
             for w in ("masked", "renormalized")}
    recs = {str(e): json.loads(run([ess, "plan", res, "--format", "json", "--window-error", "renormalized",
                                     "--max-error", str(e)])) for e in MAX_ERRORS}
    comp = json.loads(run([ess, "compress", res, "--format", "json"]))
    import h5py
    with h5py.File(res, "r") as f:
        acc_ess = float(f.attrs["mqar_accuracy"])

    cfg, W = load_checkpoint(ckpt)
    model = zm.HFModel(cfg, W)
    tok, tgt = zoo.ess_mqar_batch(ess, kv, length, n, SEED, cfg["vocab_size"])
    with torch.no_grad():
        base_loss, base_acc = query_metrics(model(tok), tgt)

    # predicted errors per (layer, pattern): the plan's window candidates, compress's students
    pred = {}
    for lay in comp["layers"]:
        for s in lay.get("students", []):
            pred[(lay["layer_index"], s["pattern"])] = {
                "window": s["window"], "sinks": s["sinks"], "topk": s["topk"],
                "masked_error": s["mean_masked_error"], "renormalized_error": s["mean_renormalized_error"],
                "operator_masked_error": s["operator_masked_error"],
                "operator_renormalized_error": s["operator_renormalized_error"], "in_plan": False}
    for w, plan in plans.items():
        for lay in plan["layers"]:
            for c in lay["candidates"]:
                if c["kind"] != "window":
                    continue
                pat = f"window={c['size']}" + (f"+sinks={c['sinks']}" if c.get("sinks") else "")
                p = pred[(lay["layer_index"], pat)]
                p["in_plan"] = True
                p["plan_error_" + w] = c["error"]

    points = []
    for (layer, pat), p in sorted(pred.items()):
        row = {"model": name, "layer": layer, "pattern": pat, **p}
        for student in ("renormalized", "masked"):
            def hook(l, scores, probs, layer=layer, p=p, student=student):
                if l != layer:
                    return probs
                keep = pattern_mask(p, scores)
                if student == "renormalized":
                    return torch.softmax(scores.masked_fill(~keep, float("-inf")), -1)
                return probs * keep
            model.attention_hook = hook
            with torch.no_grad():
                loss, acc = query_metrics(model(tok), tgt)
            model.attention_hook = None
            row[f"{student}_loss"] = round(loss, 6)
            row[f"{student}_accuracy"] = round(acc, 6)
            row[f"{student}_delta_loss"] = round(loss - base_loss, 6)
            row[f"{student}_accuracy_drop"] = round(base_acc - acc, 6)
        points.append(row)

    recommended = {}
    for e, plan in recs.items():
        out = []
        for lay in plan["layers"]:
            r = lay["recommended"]
            entry = {"layer": lay["layer_index"], "kind": r["kind"], "size": r["size"], "sinks": r.get("sinks", 0),
                     "predicted_error": r["error"]}
            if r["kind"] == "window":
                pat = f"window={r['size']}" + (f"+sinks={r['sinks']}" if r.get("sinks") else "")
                hit = next(x for x in points if x["layer"] == lay["layer_index"] and x["pattern"] == pat)
                entry["real_accuracy_drop"] = hit["renormalized_accuracy_drop"]
                entry["real_delta_loss"] = hit["renormalized_delta_loss"]
            out.append(entry)
        recommended[e] = out
    return {"name": name, "checkpoint": os.path.relpath(ckpt, ROOT), "spec": spec, "seq_len": length,
            "accuracy_ess": acc_ess, "accuracy_torch": round(base_acc, 6), "loss_torch": round(base_loss, 6),
            "recommended_renormalized": recommended}, points


def correlations(points, boot=2000):
    """Spearman of predicted error vs real damage, for the drop-in (renormalized) and masked students."""
    out = {}
    subsets = {"all patterns": points, "plan windows (± sinks)": [p for p in points if p["in_plan"]],
               "top-k": [p for p in points if p["topk"]]}
    for sub, pts in subsets.items():
        if len(pts) < 4:
            continue
        out[sub] = {}
        for student in ("renormalized", "masked"):
            x = [p[f"{student}_error"] for p in pts]
            out[sub][student] = {
                "delta_loss": bootstrap_spearman(x, [p[f"{student}_delta_loss"] for p in pts], boot),
                "accuracy_drop": bootstrap_spearman(x, [p[f"{student}_accuracy_drop"] for p in pts], boot)}
        # the plan's default ranking (masked error) and the operator-level errors against the drop-in's damage
        for pred in ("masked_error", "operator_masked_error", "operator_renormalized_error"):
            x = [p[pred] for p in pts]
            out[sub][pred + "_vs_dropin"] = {
                "delta_loss": bootstrap_spearman(x, [p["renormalized_delta_loss"] for p in pts], boot),
                "accuracy_drop": bootstrap_spearman(x, [p["renormalized_accuracy_drop"] for p in pts], boot)}
    return out


def within_layer(points):
    """Spearman of the predicted (renormalized, masked) error with the drop-in's Δloss inside each
    (model, layer): does the plan order the patterns of one layer right?"""
    out = []
    for key in sorted({(p["model"], p["layer"]) for p in points}):
        pts = [p for p in points if (p["model"], p["layer"]) == key]
        y = [p["renormalized_delta_loss"] for p in pts]
        out.append({"model": key[0], "layer": key[1], "points": len(pts),
                    "renormalized": bootstrap_spearman([p["renormalized_error"] for p in pts], y, n=0)["spearman"],
                    "masked": bootstrap_spearman([p["masked_error"] for p in pts], y, n=0)["spearman"],
                    "max_delta_loss": max(y), "min_masked_error": min(p["masked_error"] for p in pts)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ess", default=os.path.join(ROOT, "build", "ess"))
    ap.add_argument("--n", type=int, default=32, help="MQAR sequences per model (the same batch for both sides)")
    ap.add_argument("--models", default="", help="comma-separated names (default: every shipped SA model)")
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "data", "findings", "plan_check.json"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    models = shipped_models()
    if a.models:
        models = [m for m in models if m[0] in a.models.split(",")]
    out_models, points = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name, ckpt, kv, length in models:
            info, pts = check_model(a.ess, name, ckpt, kv, length, a.n, tmp)
            out_models.append(info)
            points += pts
            print(f"{name}: accuracy ess {info['accuracy_ess']:.4f} torch {info['accuracy_torch']:.4f}, "
                  f"{len(pts)} (layer, pattern) points", file=sys.stderr)
    per_model = {m["name"]: correlations([p for p in points if p["model"] == m["name"]], boot=0) for m in out_models}
    solving = [m["name"] for m in out_models if m["accuracy_torch"] >= 0.9]
    pooled = [p for p in points if p["model"] in solving]
    out = {"command": "/usr/bin/python3 tools/reference/plan_check.py" + (f" --n {a.n}" if a.n != 32 else ""),
           "students": STUDENTS, "seed": SEED, "n": a.n,
           "note": "predicted error = mean block error of the stored student (what `ess plan` ranks); damage = "
                   "change of query cross-entropy / accuracy on the same batch when one layer's attention (all heads) "
                   "is replaced by the student in PyTorch",
           "models": out_models, "pooled_models": solving, "correlations": correlations(pooled),
           "within_layer": within_layer(points),
           "correlations_per_model": per_model,
           "points": points}
    os.makedirs(os.path.dirname(a.output), exist_ok=True)
    tmp = a.output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, a.output)
    f = lambda r: "  n/a " if r is None else f"{r:+.3f}"  # noqa: E731
    for sub, d in out["correlations"].items():
        for k, v in d.items():
            print(f"{sub:24s} {k:36s} Δloss ρ {f(v['delta_loss']['spearman'])} {v['delta_loss']['interval']}  "
                  f"acc drop ρ {f(v['accuracy_drop']['spearman'])} {v['accuracy_drop']['interval']}  "
                  f"({v['delta_loss']['points']} points)")
    for w in out["within_layer"]:
        print(f"within {w['model']:16s} layer {w['layer']}: ρ(renormalized error, Δloss) {f(w['renormalized'])}, "
              f"ρ(masked error, Δloss) {f(w['masked'])} over {w['points']} patterns; largest Δloss "
              f"{w['max_delta_loss']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
