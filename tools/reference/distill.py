#!/usr/bin/python3
"""Distillation of GLA teachers into GLA students of smaller state, by layer-output matching on
MQAR inputs; then does the teacher's ESS (and `ess compress`'s Eckart–Young tail at N_s) predict
the student's matching error, loss and accuracy? (docs/findings.md, finding 2)

    distill.py [--teachers gla-n64-d1-s0,...] [--states 2,4,8,16,32,64] [--steps 400]
               [--ess build/ess] [-o data/findings/distill.json]
    distill.py --teachers T --part      one teacher → data/findings/distill/T.json
    distill.py --merge                  data/findings/distill/*.json → data/findings/distill.json

For each teacher (a zoo GLA model) and student state N_s, the student is the teacher with every
attention layer replaced by a GLA attention whose head key dim is N_s (q_proj, k_proj, gk_proj
resized; v, g, o projections, norms and MLPs copied from the teacher and frozen everywhere but in
the attention). Each student attention layer l is trained, independently, to reproduce the
teacher's attention output on the teacher's own input to that layer (teacher forcing):
    loss_l = ||attn_s(u_l) − attn_t(u_l)||² / ||attn_t(u_l)||²,  u_l = the teacher's normalised input
over fresh MQAR batches of the teacher's difficulty (AdamW, cosine schedule). The initial q/k/gk
rows are the teacher's first N_s key dims of each head (a warm start; trained from there).
Reported per (teacher, N_s): the relative matching error of each layer on a held-out batch, the
student's MQAR loss and accuracy (PyTorch, and through `ess analyze --mqar` on the student's
checkpoint), and the teacher-side predictors: mean tolerance-/entropy-ESS per layer and
`ess compress --state N_s` mean tail per layer (teacher analyzed with --keep-sigma 64).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import zoo_models as zm  # noqa: E402
from st_io import load_checkpoint, quantize, write_safetensors  # noqa: E402

ZOO = os.path.join(ROOT, "data", "zoo")


def student_from_teacher(cfg, W, ns, seed):
    """(student cfg, tensors): the teacher with head key dim ns."""
    D, H = cfg["hidden_size"], cfg["num_heads"]
    hk = int(D * cfg["expand_k"]) // H
    scfg = dict(cfg)
    scfg["expand_k"] = ns * H / D
    assert int(D * scfg["expand_k"]) == ns * H
    rng = np.random.default_rng(seed)
    S = {}
    for name, t in W.items():
        if any(name.endswith(s) for s in ("attn.q_proj.weight", "attn.k_proj.weight", "attn.gk_proj.1.weight",
                                          "attn.gk_proj.1.bias", "attn.q_conv1d.weight", "attn.k_conv1d.weight")):
            rows = t.reshape(H, hk, *t.shape[1:])
            if ns <= hk:
                new = rows[:, :ns]
            else:  # more key dims than the teacher: copy them; new q/k rows start small, the rest copy a dim
                extra = rows[:, rng.integers(0, hk, ns - hk)]
                if name.endswith(("q_proj.weight", "k_proj.weight")):
                    extra = rng.standard_normal(extra.shape) * 0.02
                new = np.concatenate([rows, extra], 1)
            S[name] = new.reshape(H * ns, *t.shape[1:])
        else:
            S[name] = t
    return scfg, S


def teacher_inputs(teacher, tok):
    """Per layer: the teacher's normalised attention input u_l and its attention output."""
    c = teacher.cfg
    B, L = tok.shape
    out = []
    with torch.no_grad():
        x = teacher.w("model.embeddings.weight")[tok]
        teacher.eps = c["norm_eps"]
        for l in range(c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            u = zm.rms(x, teacher.w(p + "attn_norm.weight"), teacher.eps)
            y = teacher.gla_mixer(l, u, B, L)
            out.append((u, y))
            x = x + y
            v = zm.rms(x, teacher.w(p + "mlp_norm.weight"), teacher.eps)
            x = x + (F.silu(v @ teacher.w(p + "mlp.gate_proj.weight").T) * (v @ teacher.w(p + "mlp.up_proj.weight").T)) \
                @ teacher.w(p + "mlp.down_proj.weight").T
    return out


def distill(tcfg, TW, kv, length, ns, steps, seed, log):
    torch.manual_seed(seed)
    teacher = zm.HFModel(tcfg, TW)
    scfg, SW = student_from_teacher(tcfg, TW, ns, seed)
    attn = {n for n in SW if ".attn." in n}
    student = zm.HFModel(scfg, SW, frozen=set(SW) - attn)
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3, betas=(0.9, 0.98), weight_decay=0.0)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
    gen = torch.Generator().manual_seed(5000 + seed)
    student.eps = scfg["norm_eps"]
    nl = tcfg["num_hidden_layers"]
    t0 = time.process_time()
    for step in range(1, steps + 1):
        tok, _ = zm.mqar_batch(32, kv, length, tcfg["vocab_size"], gen)
        B, L = tok.shape
        loss = 0.0
        for l, (u, y) in enumerate(teacher_inputs(teacher, tok)):
            ys = student.gla_mixer(l, u, B, L)
            loss = loss + ((ys - y).pow(2).sum() / y.pow(2).sum()) / nl
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps:
            log(f"  N_s={ns:3d} step {step:4d} relative matching loss {loss.item():.4f} ({time.process_time() - t0:.0f} s)")
    return scfg, {n: t for n, t in student.named_hf_tensors().items()}, time.process_time() - t0


def evaluate(cfg, W, tcfg, TW, kv, length):
    """Held-out relative matching error per layer, MQAR CE loss and accuracy (PyTorch)."""
    held = torch.Generator().manual_seed(777)
    tok, tgt = zm.mqar_batch(128, kv, length, cfg["vocab_size"], held)
    teacher, student = zm.HFModel(tcfg, TW), zm.HFModel(cfg, W)
    student.eps = cfg["norm_eps"]
    B, L = tok.shape
    with torch.no_grad():
        errs = []
        for l, (u, y) in enumerate(teacher_inputs(teacher, tok)):
            errs.append(float((student.gla_mixer(l, u, B, L) - y).norm() / y.norm()))
        logits = student(tok)
        loss = float(F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), tgt.reshape(-1), ignore_index=-100))
        m = tgt >= 0
        acc = float((logits.argmax(-1)[m] == tgt[m]).float().mean())
    return errs, loss, acc


def summarize(teachers, rows):
    """Rank correlations over every (teacher, N_s) row between the teacher-side predictors and the
    student's outcome, and per teacher whether compress's recommendation reaches 95% of the
    teacher's accuracy (for several --max-error levels, from the per-state tails)."""
    from scipy.stats import spearmanr
    by_t = {t["name"]: t for t in teachers}
    pred = {
        "compress_tail": lambda r: float(np.mean(r["tail"])),
        "teacher_entropy_ess/N_s": lambda r: float(np.mean(by_t[r["teacher"]]["entropy_ess"])) / r["student_state"],
        "teacher_tolerance_ess/N_s": lambda r: float(np.mean(by_t[r["teacher"]]["tolerance_ess"])) / r["student_state"],
        "N_s/kv": lambda r: r["student_state"] / r["kv"],
    }
    outcome = {"matching_error": lambda r: float(np.mean(r["matching_error"])), "student_loss": lambda r: r["student_loss"],
               "student_accuracy": lambda r: r["student_accuracy_ess"],
               "accuracy_ratio": lambda r: r["student_accuracy_ess"] / max(r["teacher_accuracy_ess"], 1e-9)}
    cors = []
    for pn, pf in pred.items():
        for on, of in outcome.items():
            x, y = [pf(r) for r in rows], [of(r) for r in rows]
            rho, pv = spearmanr(x, y)
            cors.append({"predictor": pn, "outcome": on, "n": len(x), "spearman": float(rho), "p_value": float(pv)})
    rec = []
    for t in teachers:
        tr = sorted([r for r in rows if r["teacher"] == t["name"]], key=lambda r: r["student_state"])
        for max_error in (1e-2, 3e-2, 1e-1):
            # per layer: smallest N_s with mean tail ≤ max_error (compress's rule); the student uses one
            # N_s for every layer, so the model's recommendation is the largest over layers
            per_layer = []
            for li in range(len(tr[0]["tail"])):
                ok = [r["student_state"] for r in tr if r["tail"][li] <= max_error]
                per_layer.append(min(ok) if ok else None)
            n_rec = None if None in per_layer else max(per_layer)
            hit = next((r for r in tr if r["student_state"] == n_rec), None)
            rec.append({"teacher": t["name"], "max_error": max_error, "recommended_state": n_rec,
                        "student_accuracy": hit["student_accuracy_ess"] if hit else None,
                        "teacher_accuracy": t["accuracy_ess"],
                        "reaches_95pct": bool(hit and hit["student_accuracy_ess"] >= 0.95 * t["accuracy_ess"]),
                        "smallest_state_reaching_95pct": next((r["student_state"] for r in tr
                                                               if r["student_accuracy_ess"] >= 0.95 * t["accuracy_ess"]), None)})
    return {"correlations": cors, "recommendations": rec}


def ess_json(ess, *args):
    return json.loads(subprocess.run([ess, *args], check=True, capture_output=True, text=True).stdout)


TEACHERS = ("gla-n64-d1-s0", "gla-n64-d2-s0", "gla-n64-d3-s0")
PARTS = os.path.join(ROOT, "data", "findings", "distill")


def merge(output):
    """data/findings/distill/*.json (one per teacher) → one file with the summary."""
    parts = [json.load(open(os.path.join(PARTS, f))) for f in sorted(os.listdir(PARTS)) if f.endswith(".json")]
    # A teacher may be split by states over several parts (--tag): its rows are joined, and its
    # per-layer recommendation (compress's rule at its default --max-error 1e-2) is re-read from the
    # joined rows' tails.
    teachers = {}
    for p in parts:
        for t in p["teachers"]:
            teachers.setdefault(t["name"], dict(t, compress_states=[]))["compress_states"] += p["states"]
    teachers = list(teachers.values())
    rows = sorted([dict(r, steps=r.get("steps", p["steps"])) for p in parts for r in p["rows"]],
                  key=lambda r: ([t["name"] for t in teachers].index(r["teacher"]), r["student_state"]))
    for t in teachers:
        t.pop("compress", None)  # the full compress output of one part; the rows hold every state's tail
        tr = [r for r in rows if r["teacher"] == t["name"]]
        t["compress_states"] = sorted(t["compress_states"])
        t["recommended_state"] = [min([r["student_state"] for r in tr if r["tail"][li] <= 1e-2], default=None)
                                  for li in range(len(tr[0]["tail"]))]
    out = {"command": "/usr/bin/python3 tools/reference/distill.py --merge (parts: "
                      + "; ".join(p["command"] for p in parts) + ")",
           "steps": {t["name"]: sorted({r["steps"] for r in rows if r["teacher"] == t["name"]}) for t in teachers},
           "states": sorted({r["student_state"] for r in rows}), "parts": [p["command"] for p in parts],
           "teachers": teachers, "rows": rows, "summary": summarize(teachers, rows)}
    json.dump(out, open(output, "w"), indent=1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teachers", default=",".join(TEACHERS))
    ap.add_argument("--merge", action="store_true", help="only merge data/findings/distill/*.json into -o")
    ap.add_argument("--states", default="2,4,8,16,32,64")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--ess", default=os.path.join(ROOT, "build", "ess"))
    ap.add_argument("--n", type=int, default=16, help="MQAR sequences for the ess measurements")
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "data", "findings", "distill.json"))
    ap.add_argument("--part", action="store_true", help="write data/findings/distill/TEACHER[.TAG].json (one teacher)")
    ap.add_argument("--tag", default="", help="with --part: a suffix, to split one teacher's states over processes")
    a = ap.parse_args()
    if a.merge:
        merge(a.output)
        print(a.output)
        return
    torch.set_num_threads(1)
    states = [int(s) for s in a.states.split(",")]
    man = {}
    for tname in a.teachers.split(","):
        info = json.load(open(os.path.join(ZOO, tname, "train.json")))
        info["dir"] = tname
        man[tname] = info
    rows, teachers = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for tname in a.teachers.split(","):
            m = man[tname]
            tdir = os.path.join(ZOO, m["dir"])
            tcfg, TW = load_checkpoint(tdir)
            kv, length = m["kv"], m["len"]
            spec = f"kv={kv},len={length},n={a.n},seed=4242"
            tres = os.path.join(tmp, tname + ".h5")
            subprocess.run([a.ess, "analyze", tdir, "--mqar", spec, "-o", tres, "--keep-sigma", str(max(states)),
                            "--quiet"], check=True, stdout=subprocess.DEVNULL)
            rep = ess_json(a.ess, "report", tres, "--format", "json")
            comp = ess_json(a.ess, "compress", tres, "--state", a.states, "--format", "json")
            with h5py.File(tres, "r") as f:
                tacc = float(f.attrs["mqar_accuracy"])
            _, tloss, tacc_torch = evaluate(tcfg, TW, tcfg, TW, kv, length)
            teachers.append({"name": tname, "kv": kv, "len": length, "accuracy_ess": tacc, "accuracy_torch": tacc_torch,
                             "loss": tloss, "spec": spec, "state": m["state"],
                             "tolerance_ess": [l["mean_tolerance_ess"] for l in rep["layers"]],
                             "entropy_ess": [l["mean_entropy_ess"] for l in rep["layers"]],
                             "recommended_state": [l["recommended_state"] for l in comp["layers"]],
                             "compress": comp})
            print(f"teacher {tname}: accuracy {tacc:.4f} (ess), recommended states "
                  f"{[l['recommended_state'] for l in comp['layers']]}", flush=True)
            for ns in states:
                scfg, SW, cpu = distill(tcfg, TW, kv, length, ns, a.steps, 0, lambda s: print(s, flush=True))
                SWq = {n: quantize(t, "F32") for n, t in SW.items()}
                errs, loss, acc = evaluate(scfg, SWq, tcfg, TW, kv, length)
                sdir = os.path.join(tmp, f"{tname}-student{ns}")
                os.makedirs(sdir)
                json.dump(scfg, open(os.path.join(sdir, "config.json"), "w"))
                write_safetensors(os.path.join(sdir, "model.safetensors"), SWq, "F32")
                sres = os.path.join(sdir, "r.h5")
                subprocess.run([a.ess, "analyze", sdir, "--mqar", spec, "-o", sres, "--indices", "1:2:1", "--quiet"],
                               check=True, stdout=subprocess.DEVNULL)
                with h5py.File(sres, "r") as f:
                    sacc = float(f.attrs["mqar_accuracy"])
                tails = [next(t["mean_tail"] for t in l["targets"] if t["state"] == ns) for l in comp["layers"]]
                row = {"teacher": tname, "kv": kv, "len": length, "student_state": ns, "steps": a.steps, "matching_error": errs,
                       "student_loss": loss, "student_accuracy_torch": acc, "student_accuracy_ess": sacc,
                       "teacher_accuracy_ess": tacc, "tail": tails, "cpu_seconds": round(cpu, 1),
                       "truncated_entropy_ess": [next(t["truncated_entropy_ess"] for t in l["targets"] if t["state"] == ns)
                                                 for l in comp["layers"]]}
                rows.append(row)
                print(f"{tname} N_s={ns}: matching error {['%.3f' % e for e in errs]}, accuracy {sacc:.4f} (ess) "
                      f"{acc:.4f} (torch), tails {['%.3f' % t for t in tails]}", flush=True)
    out = {"command": "/usr/bin/python3 tools/reference/distill.py " + " ".join(sys.argv[1:]),
           "steps": a.steps, "states": states, "teachers": teachers, "rows": rows,
           "summary": summarize(teachers, rows)}
    if a.part:
        os.makedirs(PARTS, exist_ok=True)
        path = os.path.join(PARTS, a.teachers.replace(",", "+") + (f".{a.tag}" if a.tag else "") + ".json")
        json.dump(out, open(path, "w"), indent=1)
        print(path)
        return
    os.makedirs(os.path.dirname(a.output), exist_ok=True)
    json.dump(out, open(a.output, "w"), indent=1)
    print(a.output)


if __name__ == "__main__":
    main()
