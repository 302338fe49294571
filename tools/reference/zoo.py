#!/usr/bin/python3
"""The MQAR zoo: tiny models trained on CPU on multi-query associative recall, shipped as Hugging
Face checkpoints that `ess analyze` reads, with a manifest (data/zoo/manifest.json).

    zoo.py list                                  the zoo's entries (name, family, state, kv, len, seed)
    zoo.py train NAME... | --all [--out DIR]     (re)train entries; writes DIR/NAME/{config.json,
                                                 model.safetensors, train.json}
    zoo.py measure [NAME...] --ess BUILD/ess     MQAR accuracy of each shipped checkpoint through the
                                                 C++ forward (`ess analyze --mqar`) and through PyTorch
                                                 on the same batch (`ess mqar`), into the manifest
    zoo.py manifest [--out DIR]                  rebuild DIR/manifest.json from the train.json files

Each entry trains one model on one MQAR difficulty (kv pairs, sequence length) with one seed.
Recipe (docs/zoo.md): the MQAR distribution of models/tokens.cpp (keys distinct from [1, V/2),
values from [V/2, V), then query pairs drawn from the context; loss only at query keys), vocabulary
160, 2 layers, d_model 64, AdamW (β 0.9/0.98, weight decay 0.1 on matrices), linear warm-up then
cosine decay, batch 32, fresh batches every step, early stop when the held-out accuracy is ≥ 99%
at two evaluations in a row, or (past step 800) when it has not gained a point in 600 steps. Deterministic for a given entry on a given torch version; float32 on
one CPU thread (torch.set_num_threads(1)). Weights are stored as F16.
"""
import argparse
import hashlib
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

VOCAB, D_MODEL, LAYERS, BATCH, DTYPE = 160, 64, 2, 32, "F16"
DEFAULT_OUT = os.path.join(ROOT, "data", "zoo")

# Difficulties (kv pairs, sequence length) and their step budgets.
DIFFICULTIES = {"d1": (4, 64), "d2": (16, 128), "d3": (64, 256)}
MAX_STEPS = {"d1": 1500, "d2": 1500, "d3": 600}  # d3 warm-starts from d1 (zoo_entries)
LR = {"sa": 3e-3, "gla": 3e-3, "gla0": 3e-3, "la": 3e-3, "mamba": 3e-3, "mamba2": 3e-3}


def entry(family, state, diff, seed, **extra):
    kv, length = DIFFICULTIES[diff]
    e = {"name": f"{family}-n{state}-{diff}-s{seed}", "family": family, "state": state, "difficulty": diff,
         "kv": kv, "len": length, "seed": seed, "steps": MAX_STEPS[diff], "lr": LR[family], "batch": BATCH,
         "vocab": VOCAB, "d_model": D_MODEL, "layers": LAYERS}
    e.update(extra)
    return e


def zoo_entries():
    """The zoo in training priority order (47 models): every family and state at d1 with seed 0;
    the GLA teachers (state 64) and softmax attention at d2 and d3; small and large states at d2;
    the second seed at d1 and d2; more d3 models last. Plus a control that cannot bind keys to
    values (gla0: no decay, no token shift). Mamba, whose sequential scan is the slowest to train,
    only at d1."""
    E = entry
    out = [E("sa", 16, "d1", 0)]
    out += [E(f, n, "d1", 0) for f in ("gla", "la", "mamba2") for n in (4, 16, 64)]
    out += [E("gla0", 16, "d1", 0), E("mamba", 4, "d1", 0), E("mamba", 16, "d1", 0)]
    out += [E("gla", 64, "d2", 0), E("sa", 16, "d2", 0), E("gla", 4, "d2", 0), E("la", 4, "d2", 0),
            E("gla", 64, "d3", 0), E("sa", 16, "d3", 0)]
    out += [E(f, n, "d2", 0) for f, n in (("gla", 16), ("la", 64), ("mamba2", 4), ("mamba2", 64))]
    out += [E("sa", 16, "d1", 1)] + [E(f, n, "d1", 1) for f, n in (("gla", 4), ("gla", 16), ("gla", 64), ("la", 4),
                                                                  ("la", 64), ("mamba2", 4), ("mamba2", 64))]
    out += [E("mamba", 4, "d1", 1), E("gla0", 16, "d1", 1)]
    out += [E("sa", 16, "d2", 1)] + [E(f, n, "d2", 1) for f, n in (("gla", 4), ("gla", 16), ("gla", 64), ("la", 4),
                                                                  ("la", 64), ("mamba2", 4), ("mamba2", 64))]
    out += [E("gla", 64, "d3", 1), E("sa", 16, "d3", 1), E("gla", 16, "d3", 0)]
    out += [E("mamba2", 16, "d3", 0), E("mamba2", 64, "d3", 0), E("gla", 16, "d3", 1)]
    for e in out:  # d3 (kv = 64, len = 256) is a curriculum step: it starts from the d1 model (docs/zoo.md)
        if e["difficulty"] == "d3":
            e["init_from"] = f"{e['family']}-n{e['state']}-d1-s{e['seed']}"
    return out


def claim(outdir, name):
    """Atomically claim an entry for this worker (a lock file); False when another worker has it."""
    os.makedirs(outdir, exist_ok=True)
    try:
        fd = os.open(os.path.join(outdir, f".{name}.lock"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def find(names):
    by = {e["name"]: e for e in zoo_entries()}
    missing = [n for n in names if n not in by]
    if missing:
        sys.exit(f"zoo.py: unknown entries {missing}; `zoo.py list` shows the zoo")
    return [by[n] for n in names]


# ---------------------------------------------------------------------------------------------
# training


def accuracy(logits, tgt):
    m = tgt >= 0
    return (logits.argmax(-1)[m] == tgt[m]).float().mean().item()


def train(e, outdir, log=print):
    torch.set_num_threads(1)
    torch.manual_seed(e["seed"])
    note = (f"ess zoo {e['name']}: trained by tools/reference/zoo.py on MQAR kv={e['kv']}, len={e['len']}, "
            f"seed={e['seed']}")
    cfg, tensors, frozen = zm.build(e["family"], e["vocab"], e["d_model"], e["state"], e["seed"], e["layers"], note=note)
    if e.get("init_from"):
        # warm start: every tensor from the trained sibling at an easier difficulty (same family,
        # state and seed, so the same shapes); only the MQAR difficulty changes
        src = os.path.join(outdir, e["init_from"])
        if not os.path.exists(os.path.join(src, "train.json")):
            raise RuntimeError(f"{e['name']}: starts from {e['init_from']}, which is not trained yet ({src})")
        _, W0 = load_checkpoint(src)
        if sorted(W0) != sorted(tensors) or any(W0[n].shape != np.shape(tensors[n]) for n in tensors):
            raise RuntimeError(f"{e['name']}: {src} does not have this model's tensors")
        tensors = {n: W0[n] for n in tensors}
        log(f"{e['name']}: starting from {e['init_from']}")
    model = zm.HFModel(cfg, tensors, frozen)
    decay = [p for n, p in model.p.items() if p.requires_grad and p.dim() >= 2]
    other = [p for n, p in model.p.items() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=e["lr"], betas=(0.9, 0.98))
    steps, warm = e["steps"], max(1, e["steps"] // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
    gen = torch.Generator().manual_seed(1000 + e["seed"])
    held = torch.Generator().manual_seed(999_999)
    ev_tok, ev_tgt = zm.mqar_batch(128, e["kv"], e["len"], e["vocab"], held)
    curve, good, t0, loss_acc, n_acc = [], 0, time.process_time(), 0.0, 0
    every = 100
    for step in range(1, steps + 1):
        tok, tgt = zm.mqar_batch(e["batch"], e["kv"], e["len"], e["vocab"], gen)
        logits = model(tok)
        loss = F.cross_entropy(logits.reshape(-1, e["vocab"]), tgt.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"{e['name']}: loss is not finite at step {step}")
        loss_acc += loss.item()
        n_acc += 1
        if step % every == 0 or step == steps:
            with torch.no_grad():
                ev = accuracy(model(ev_tok), ev_tgt)
            curve.append({"step": step, "train_loss": round(loss_acc / n_acc, 5), "eval_accuracy": round(ev, 5),
                          "cpu_s": round(time.process_time() - t0, 1)})
            log(f"{e['name']}: step {step:5d}  loss {loss_acc / n_acc:.4f}  held-out accuracy {ev:.4f}  "
                f"({time.process_time() - t0:.0f} s)")
            loss_acc, n_acc = 0.0, 0
            good = good + 1 if ev >= 0.99 else 0
            if good >= 2:
                break
            # plateau: past step 800, no gain of 1 point in held-out accuracy over the last 600 steps
            past = [c["eval_accuracy"] for c in curve if c["step"] <= step - 600]
            if step >= 800 and past and ev - max(past) < 0.01 and max(c["eval_accuracy"] for c in curve) - max(past) < 0.01:
                log(f"{e['name']}: plateau (no gain over 600 steps), stopping")
                break
    cpu = time.process_time() - t0
    d = os.path.join(outdir, e["name"])
    os.makedirs(d, exist_ok=True)
    W = {n: quantize(t, DTYPE) for n, t in model.named_hf_tensors().items()}
    # held-out accuracy of the stored (F16) weights in float32 PyTorch
    with torch.no_grad():
        stored = zm.HFModel(cfg, W)
        acc_stored = accuracy(stored(ev_tok), ev_tgt)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"), W, DTYPE)
    info = dict(e)
    info.update({"architecture": cfg["architectures"][0], "trained_steps": curve[-1]["step"], "cpu_seconds": round(cpu, 1),
                 "torch_version": torch.__version__, "dtype": DTYPE,
                 "command": f"/usr/bin/python3 tools/reference/zoo.py train {e['name']}",
                 "heldout_accuracy_torch": round(acc_stored, 5), "curve": curve})
    with open(os.path.join(d, "train.json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"{e['name']}: done in {cpu:.0f} s CPU, {curve[-1]['step']} steps, held-out accuracy {acc_stored:.4f} (F16)")
    return info


# ---------------------------------------------------------------------------------------------
# measuring through ess


def ess_mqar_batch(ess, kv, length, n, seed, vocab):
    """The batch `ess analyze --mqar` would draw: (tokens, targets) as int64 tensors."""
    with tempfile.TemporaryDirectory() as tmp:
        tok, tgt = os.path.join(tmp, "tokens.txt"), os.path.join(tmp, "targets.txt")
        subprocess.run([ess, "mqar", f"kv={kv},len={length},n={n},seed={seed}", "--vocab", str(vocab), "-o", tok,
                        "--targets", tgt], check=True, stdout=subprocess.DEVNULL)
        read = lambda p: torch.tensor([[int(v) for v in line.split()] for line in open(p) if line.strip()])  # noqa
        return read(tok), read(tgt)


def measure(e, outdir, ess, n=64, seed=12345):
    """Accuracy on the batch of `ess analyze --mqar kv,len,n,seed` through both forward passes."""
    d = os.path.join(outdir, e["name"])
    spec = f"kv={e['kv']},len={e['len']},n={n},seed={seed}"
    with tempfile.TemporaryDirectory() as tmp:
        r = os.path.join(tmp, "r.h5")
        subprocess.run([ess, "analyze", d, "--mqar", spec, "-o", r, "--indices", f"{e['len'] // 2}:{e['len'] // 2 + 1}:1",
                        "--quiet", "--threads", "1"], check=True, stdout=subprocess.DEVNULL)
        with h5py.File(r, "r") as f:
            acc_cpp = float(f.attrs["mqar_accuracy"])
    cfg, W = load_checkpoint(d)
    tok, tgt = ess_mqar_batch(ess, e["kv"], e["len"], n, seed, cfg["vocab_size"])
    tgt = torch.where(tgt >= 0, tgt, torch.full_like(tgt, -100))
    with torch.no_grad():
        logits = zm.HFModel(cfg, W)(tok)
    m = tgt >= 0
    acc_torch = (logits.argmax(-1)[m] == tgt[m]).double().mean().item()
    # near-ties: queries whose top-2 logits differ by < 1e-4 (float32 vs float64 may order them differently)
    top2 = logits.topk(2, -1).values
    ties = int(((top2[..., 0] - top2[..., 1]).abs() < 1e-4)[m].sum())
    return {"spec": spec, "queries": int(m.sum()), "accuracy_ess": round(acc_cpp, 6),
            "accuracy_torch": round(acc_torch, 6), "near_ties": ties,
            "command": f"ess analyze data/zoo/{e['name']} --mqar {spec} -o R.h5"}


def sha256_dir(d):
    h = hashlib.sha256()
    for f in sorted(os.listdir(d)):
        if f in ("config.json", "model.safetensors"):
            h.update(f.encode() + open(os.path.join(d, f), "rb").read())
    return h.hexdigest()


def write_manifest(outdir, measured=None):
    path = os.path.join(outdir, "manifest.json")
    old = json.load(open(path)) if os.path.exists(path) else {"models": []}
    prev = {m["name"]: m for m in old.get("models", [])}
    models = []
    for e in zoo_entries():
        tj = os.path.join(outdir, e["name"], "train.json")
        if not os.path.exists(tj):
            continue
        info = json.load(open(tj))
        info["path"] = f"data/zoo/{e['name']}"
        info["dir"] = e["name"]  # relative to the manifest (what `ess study --manifest` reads)
        info["sha256"] = sha256_dir(os.path.join(outdir, e["name"]))
        m = (measured or {}).get(e["name"]) or prev.get(e["name"], {}).get("mqar")
        if m and prev.get(e["name"], {}).get("sha256") not in (None, info["sha256"]) and e["name"] not in (measured or {}):
            m = None  # retrained since it was measured
        if m:
            info["mqar"] = m
        models.append(info)
    man = {"format": "ess-zoo", "version": 1,
           "description": "MQAR models trained by tools/reference/zoo.py (docs/zoo.md)",
           "recipe": {"vocab": VOCAB, "d_model": D_MODEL, "layers": LAYERS, "batch": BATCH, "dtype": DTYPE,
                      "difficulties": {k: {"kv": v[0], "len": v[1], "max_steps": MAX_STEPS[k]}
                                       for k, v in DIFFICULTIES.items()}, "lr": LR},
           "retrain_all": "/usr/bin/python3 tools/reference/zoo.py train --all",
           "models": models}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(man, f, indent=1)
    os.replace(tmp, path)
    return man


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    t = sub.add_parser("train")
    t.add_argument("names", nargs="*")
    t.add_argument("--all", action="store_true")
    t.add_argument("--missing", action="store_true", help="only entries without a train.json")
    t.add_argument("--out", default=DEFAULT_OUT)
    t.add_argument("--lr", type=float, help="override the learning rate (pilots)")
    t.add_argument("--steps", type=int, help="override the step budget (pilots)")
    t.add_argument("--shard", default="0/1", help="K/N: train every N-th entry starting at K (parallel workers)")
    t.add_argument("--queue", action="store_true",
                   help="worker mode: repeatedly train the first entry (in priority order) without a train.json "
                        "that no other worker has claimed (lock files DIR/.NAME.lock); run several at once")
    m = sub.add_parser("measure")
    m.add_argument("names", nargs="*")
    m.add_argument("--ess", default=os.path.join(ROOT, "build", "ess"))
    m.add_argument("--out", default=DEFAULT_OUT)
    mf = sub.add_parser("manifest")
    mf.add_argument("--out", default=DEFAULT_OUT)
    a = ap.parse_args()
    if a.cmd == "list":
        for e in zoo_entries():
            print(f"{e['name']:28s} {e['family']:7s} state={e['state']:3d} kv={e['kv']:3d} len={e['len']:4d} "
                  f"seed={e['seed']} steps≤{e['steps']}")
        return 0
    if a.cmd == "train" and a.queue:
        # The text LMs of textlm.py (finding 3) join the queue after the GLA teachers.
        import textlm
        t0, done = time.time(), 0
        while True:
            entries = zoo_entries()
            cut = next(k for k, e in enumerate(entries) if e["name"] == "la-n4-d2-s0") + 1
            distill = [{"name": f"distill-{t}", "distill": t} for t in ("gla-n64-d1-s0", "gla-n64-d2-s0", "gla-n64-d3-s0")]
            jobs = entries[:cut] + [{"name": f"text-{n}", "text": n} for n in textlm.FAMILY] + distill[:2] \
                + entries[cut:cut + 2] + distill[2:] + entries[cut + 2:]
            parts = os.path.join(ROOT, "data", "findings", "distill")
            done_path = lambda e: (os.path.join(textlm.OUT, e["text"], "train.json") if "text" in e  # noqa: E731
                                   else os.path.join(parts, e["distill"] + ".json") if "distill" in e
                                   else os.path.join(a.out, e["name"], "train.json"))
            split = lambda e: "distill" in e and os.path.isdir(parts) and any(  # noqa: E731  (--tag parts)
                f.startswith(e["distill"] + ".") for f in os.listdir(parts))
            ready = lambda e: "distill" not in e or os.path.exists(os.path.join(a.out, e["distill"], "train.json"))  # noqa
            e = next((e for e in jobs if not os.path.exists(done_path(e)) and not split(e) and ready(e)
                      and claim(a.out, e["name"])),
                     None)
            if e is None:
                break
            if "text" in e:
                textlm.train(e["text"], 2000, textlm.OUT)  # as shipped (docs/findings.md §3)
            elif "distill" in e:
                subprocess.run([sys.executable, os.path.join(HERE, "distill.py"), "--teachers", e["distill"], "--part"],
                               check=True)
            else:
                train(e, a.out)
            os.remove(os.path.join(a.out, f".{e['name']}.lock"))
            done += 1
        print(f"worker trained {done} model(s) in {time.time() - t0:.0f} s wall")
        return 0
    if a.cmd == "train":
        selected = zoo_entries() if (a.all or a.missing) else find(a.names)
        if a.missing:
            selected = [e for e in selected if not os.path.exists(os.path.join(a.out, e["name"], "train.json"))]
        k, n = (int(x) for x in a.shard.split("/"))
        selected = selected[k::n]
        t0 = time.time()
        for e in selected:
            if a.lr:
                e["lr"] = a.lr
            if a.steps:
                e["steps"] = a.steps
            train(e, a.out)
            if n == 1:
                write_manifest(a.out)
        print(f"trained {len(selected)} model(s) in {time.time() - t0:.0f} s wall")
        return 0
    if a.cmd == "measure":
        man = write_manifest(a.out)
        names = a.names or [x["name"] for x in man["models"]]
        res = {}
        for e in find(names):
            res[e["name"]] = r = measure(e, a.out, a.ess)
            print(f"{e['name']}: ess {100 * r['accuracy_ess']:.2f}%  torch {100 * r['accuracy_torch']:.2f}%  "
                  f"({r['queries']} queries, {r['near_ties']} near-ties)", flush=True)
        write_manifest(a.out, res)
        return 0
    if a.cmd == "manifest":
        write_manifest(a.out)
        return 0


if __name__ == "__main__":
    sys.exit(main())
