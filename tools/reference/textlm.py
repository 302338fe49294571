#!/usr/bin/python3
"""State modulation (docs/findings.md, finding 3): small character-level LMs (softmax attention,
GLA, linear attention) trained on Debian-packaged documentation with documents separated by an
end-of-sequence token; then ESS_i right after an EOS against ESS_i at the same position in text
without a document boundary.

    textlm.py corpus                      build the corpus (from /usr/share/doc) and print its size
    textlm.py train [sa gla la] [--steps 1500] [--out data/zoo/text]
    textlm.py eos-tokens [--out data/zoo/text]       the analysis input (tokens file + positions)
    textlm.py modulation --ess build/ess [-o data/findings/modulation.json]

Vocabulary (98 ids): 0 = EOS, 1 = newline, 2..96 = printable ASCII 32..126, 97 = anything else
(tabs become spaces). Documents: README*, *.txt, NEWS*, copyright and changelog(.Debian).gz files
under /usr/share/doc, de-duplicated by content, at least 200 characters, cut to their first 3000;
sorted by path and split 90/10 into train / held-out by a hash of the path. Training windows of
256 tokens are cut at random offsets from the shuffled train documents joined with EOS, so most
windows contain a boundary. The models: 2 layers, d_model 64, 2 heads — `sa` LlamaForCausalLM
(head dim 32), `gla` GLAForCausalLM (head key dim 16, clamp_min −4 as in the zoo), `la` the same
GLA with clamp_min 0 (no decay: linear attention). AdamW 3e-3, batch 16, cosine schedule.
"""
import argparse
import gzip
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import zoo_models as zm  # noqa: E402
from st_io import quantize, write_safetensors  # noqa: E402

V, EOS, L = 98, 0, 256
OUT = os.path.join(ROOT, "data", "zoo", "text")
FAMILY = {"sa": ("sa", 32), "gla": ("gla", 16), "la": ("gla0", 16)}


def encode(text):
    out = []
    for ch in text.replace("\t", " "):
        o = ord(ch)
        out.append(1 if ch == "\n" else o - 30 if 32 <= o <= 126 else 97)
    return out


def decode(ids):
    return "".join("¶" if i == EOS else "\n" if i == 1 else chr(i + 30) if 2 <= i <= 96 else "?" for i in ids)


def corpus(root="/usr/share/doc"):
    """(train docs, held-out docs), each a list of token lists."""
    seen, docs = set(), []
    for d, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            low = f.lower()
            if not (low.startswith("readme") or low.endswith(".txt") or low.startswith("news") or low == "copyright"
                    or low in ("changelog.gz", "changelog.debian.gz")):
                continue
            p = os.path.join(d, f)
            try:
                raw = gzip.open(p).read() if p.endswith(".gz") else open(p, "rb").read()
            except (OSError, EOFError):
                continue
            text = raw.decode("utf-8", "replace")[:3000]
            h = hashlib.sha256(text.encode()).hexdigest()
            if len(text) < 200 or h in seen:
                continue
            seen.add(h)
            docs.append((p, encode(text)))
    train = [t for p, t in docs if int(hashlib.sha256(p.encode()).hexdigest(), 16) % 10 != 0]
    held = [t for p, t in docs if int(hashlib.sha256(p.encode()).hexdigest(), 16) % 10 == 0]
    return train, held


def stream(docs, seed):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(docs))
    out = []
    for k in order:
        out.extend(docs[k])
        out.append(EOS)
    return torch.tensor(out)


def train(name, steps, out, log=print):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    fam, state = FAMILY[name]
    cfg, W, frozen = zm.build(fam, V, 64, state, 0, heads=2,
                              note=f"ess text LM '{name}': tools/reference/textlm.py train {name} (EOS id 0)")
    cfg["eos_token_id"] = EOS
    model = zm.HFModel(cfg, W, frozen)
    tr, held = corpus()
    s_tr, s_ho = stream(tr, 1), stream(held, 2)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    other = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=3e-3, betas=(0.9, 0.98))
    warm = steps // 20
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
    gen = torch.Generator().manual_seed(3)
    ho_idx = torch.randint(0, len(s_ho) - L - 1, (64,), generator=torch.Generator().manual_seed(4))
    ho = torch.stack([s_ho[i:i + L + 1] for i in ho_idx])
    curve, t0, acc_loss = [], time.process_time(), 0.0
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(s_tr) - L - 1, (16,), generator=gen)
        batch = torch.stack([s_tr[i:i + L + 1] for i in idx])
        loss = F.cross_entropy(model(batch[:, :-1]).reshape(-1, V), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        acc_loss += loss.item()
        if step % 100 == 0 or step == steps:
            with torch.no_grad():
                hl = F.cross_entropy(model(ho[:, :-1]).reshape(-1, V), ho[:, 1:].reshape(-1)).item()
            curve.append({"step": step, "train_loss": round(acc_loss / 100, 4), "heldout_loss": round(hl, 4),
                          "cpu_s": round(time.process_time() - t0, 1)})
            log(f"{name}: step {step:5d} train loss {acc_loss / 100:.3f} held-out {hl:.3f} nats/char "
                f"({time.process_time() - t0:.0f} s)")
            acc_loss = 0.0
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    Wq = {n: quantize(t, "F16") for n, t in model.named_hf_tensors().items()}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"), indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"), Wq, "F16")
    info = {"name": name, "family": fam, "architecture": cfg["architectures"][0], "steps": steps,
            "cpu_seconds": round(time.process_time() - t0, 1), "train_docs": len(tr), "heldout_docs": len(held),
            "train_chars": int(len(s_tr)), "command": f"/usr/bin/python3 tools/reference/textlm.py train {name}",
            "curve": curve}
    json.dump(info, open(os.path.join(d, "train.json"), "w"), indent=1)
    return info


def eos_tokens(out, n=32):
    """n sequences of L tokens with one EOS (held-out doc A's end, EOS, doc B's start) at position e_k,
    and n controls: L tokens from inside one held-out document (no EOS) — positions to compare."""
    _, held = corpus()
    rng = np.random.default_rng(11)
    long_docs = [d for d in held if len(d) >= L + 8]
    rows, eos_pos = [], []
    positions = np.linspace(64, L - 64, n).astype(int)
    for k, e in enumerate(positions):
        a, b = held[rng.integers(len(held))], held[rng.integers(len(held))]
        while len(a) < e or len(b) < L - e - 1:
            a, b = held[rng.integers(len(held))], held[rng.integers(len(held))]
        rows.append(a[len(a) - e:] + [EOS] + b[:L - e - 1])
        eos_pos.append(int(e))
    for k in range(n):
        d = long_docs[rng.integers(len(long_docs))]
        s = int(rng.integers(0, len(d) - L))
        rows.append(d[s:s + L])
    assert all(len(r) == L for r in rows)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "eos_tokens.txt"), "w") as f:
        for r in rows:
            f.write(" ".join(map(str, r)) + "\n")
    json.dump({"eos_positions": eos_pos, "rows_with_eos": n, "control_rows": n, "seq_len": L,
               "note": "rows 0..n-1 hold one EOS at eos_positions[k]; rows n..2n-1 are continuous text"},
              open(os.path.join(out, "eos_tokens.json"), "w"), indent=1)


def bootstrap_ci(x, reps=4000, seed=0):
    """95% percentile bootstrap interval of the mean of x."""
    x = np.asarray(x, float)
    if len(x) < 2:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), (reps, len(x)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def paired_wilcoxon(a, b):
    """Two-sided Wilcoxon signed-rank p of a − b; 1.0 when every pair is tied (integer tolerance-ESS)."""
    from scipy.stats import wilcoxon
    if len(a) < 6:
        return None
    if np.all(a == b):
        return 1.0
    return float(wilcoxon(a, b).pvalue)


def modulation(ess, out, results_dir=None):
    """Per model and layer: ESS_i at i = e+1 (the past ends with the EOS) in the EOS rows, against
    ESS at the same i in the control rows; also the ratio within the EOS rows to their own blocks
    16+ tokens away from the boundary."""
    import h5py
    meta = json.load(open(os.path.join(out, "eos_tokens.json")))
    n, pos = meta["rows_with_eos"], meta["eos_positions"]
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in FAMILY:
            r = os.path.join(results_dir or tmp, f"text-{name}.h5")
            subprocess.run([ess, "analyze", os.path.join(out, name), "--tokens", os.path.join(out, "eos_tokens.txt"),
                            "-o", r, "--quiet"], check=True, stdout=subprocess.DEVNULL)
            layers = {}
            with h5py.File(r, "r") as f:
                for lname, g in f["layers"].items():
                    idx = list(g["indices"][...])
                    per = {}
                    for metric in ("tolerance_ess", "entropy_ess"):
                        E = g[metric][...].astype(float).mean(1)  # [B, I] mean over heads
                        at, ctrl, away = [], [], []
                        for k, e in enumerate(pos):
                            p = idx.index(e + 1)
                            at.append(E[k, p])
                            ctrl.append(E[n + k, p])
                            far = [q for q, i in enumerate(idx) if abs(i - (e + 1)) >= 16 and 32 <= i <= L - 32]
                            away.append(E[k, far].mean())
                        # profile around the boundary: offset d = i − (e + 1), EOS rows against controls
                        offs = list(range(-24, 25))
                        prof_eos, prof_ctrl = [], []
                        for d in offs:
                            pe, pc = [], []
                            for k, e in enumerate(pos):
                                if e + 1 + d in idx:
                                    p = idx.index(e + 1 + d)
                                    pe.append(E[k, p])
                                    pc.append(E[n + k, p])
                            prof_eos.append(float(np.mean(pe)))
                            prof_ctrl.append(float(np.mean(pc)))
                        at_a, ctrl_a = np.array(at), np.array(ctrl)
                        drop = 1 - at_a / np.where(ctrl_a > 0, ctrl_a, np.nan)  # per row: relative ESS drop at the EOS
                        per[metric] = {"after_eos": float(at_a.mean()), "control_same_i": float(ctrl_a.mean()),
                                       "ratio_to_control": float(at_a.mean() / ctrl_a.mean()),
                                       "same_row_away": float(np.mean(away)),
                                       "ratio_to_same_row_away": float(at_a.mean() / np.mean(away)),
                                       "per_row_ratio": [float(1 - d) for d in drop],
                                       "mean_drop": float(np.nanmean(drop)),
                                       "mean_drop_ci95": bootstrap_ci(drop[np.isfinite(drop)]),
                                       "wilcoxon_p": paired_wilcoxon(at_a, ctrl_a),
                                       "profile": {"offset": offs, "eos_rows": prof_eos, "control_rows": prof_ctrl}}
                    layers[lname] = per
            res[name] = {"family": FAMILY[name][0], "layers": layers}
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("corpus")
    t = sub.add_parser("train")
    t.add_argument("names", nargs="*", default=list(FAMILY))
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--out", default=OUT)
    e = sub.add_parser("eos-tokens")
    e.add_argument("--out", default=OUT)
    m = sub.add_parser("modulation")
    m.add_argument("--ess", default=os.path.join(ROOT, "build", "ess"))
    m.add_argument("--out", default=OUT)
    m.add_argument("-o", "--output", default=os.path.join(ROOT, "data", "findings", "modulation.json"))
    a = ap.parse_args()
    if a.cmd == "corpus":
        tr, ho = corpus()
        print(f"{len(tr)} train documents ({sum(map(len, tr))} chars), {len(ho)} held-out ({sum(map(len, ho))})")
        print(decode(tr[0][:300]))
    elif a.cmd == "train":
        for name in a.names:
            train(name, a.steps, a.out)
    elif a.cmd == "eos-tokens":
        eos_tokens(a.out)
    elif a.cmd == "modulation":
        res = modulation(a.ess, a.out)
        os.makedirs(os.path.dirname(a.output), exist_ok=True)
        json.dump({"command": "/usr/bin/python3 tools/reference/textlm.py modulation", "models": res},
                  open(a.output, "w"), indent=1)
        for name, r in res.items():
            for lname, per in r["layers"].items():
                print(f"{name:4s} {lname:24s} tolerance-ESS after EOS / control {per['tolerance_ess']['ratio_to_control']:.3f}"
                      f"  entropy-ESS {per['entropy_ess']['ratio_to_control']:.3f}")


if __name__ == "__main__":
    main()
