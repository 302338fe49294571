#!/usr/bin/python3
"""Published greedy samples of a real checkpoint, reproduced by the PyTorch reference or by `ess analyze`.

    check_real_checkpoint.py tokens    SPEC.json CKPT SAMPLE -o FILE   token ids of the sample's text
    check_real_checkpoint.py reference SPEC.json CKPT [--generate]     the reference reproduces every sample
    check_real_checkpoint.py ess       SPEC.json CKPT SAMPLE RESULTS.h5  ess analyze's /model group does
    check_real_checkpoint.py fake-results SPEC.json CKPT SAMPLE -o FILE [--corrupt POS]
                                       a /model group made by the reference, to test `ess` itself

SPEC.json (data/real/*.json) lists samples {name, prompt, steps, text}: the text llama2.c's run.c
prints when it generates greedily (temperature 0) from BOS + the prompt, for at most `steps`
positions, stopping when the model emits BOS. CKPT is the converted checkpoint directory
(tools/setup_real_checkpoints.sh), holding llama2c-tokenizer.bin.

Why one forward pass suffices: let ids = the prompt's n_p tokens (BOS + SentencePiece BPE of the
prompt, llama2c.py, or the sample's explicit prompt_ids) followed by the continuation's tokens,
with decode(ids) == text. A causal model's logits at
position t depend on ids[0..t] only, so greedy generation from the prompt produces exactly ids iff
argmax logits[t] == ids[t+1] for every t in [n_p − 1, L − 2] — and it then stops there iff
argmax logits[L−1] == BOS (or L == steps). `reference` checks this with the float64 forward of
reference_forward.py; `ess` checks the same on `ess analyze`'s /model/argmax, plus /model/input_ids,
and /model/logprobs against the reference's log-softmax (1e-8), loss = −mean(logprobs[:, :L−1]),
perplexity = exp(loss). `--control` also runs the forward with the q/k rows left in llama2.c's
adjacent-pair RoPE order (a conversion without the permutation) and requires it to fail, which
shows the check can see a wrong conversion. `--generate` also runs true greedy generation (one full forward per step;
minutes) and compares the token ids.

`ess` exits 77 (skipped) when RESULTS.h5 has no /model group (an `ess analyze` that does not store
predictions yet). Exit 1 on any mismatch, 0 when everything agrees.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama2c  # noqa: E402
import reference_forward as rf  # noqa: E402
from st_io import load_checkpoint  # noqa: E402


class Model:
    def __init__(self, ckpt):
        self.ckpt = ckpt
        self.cfg, self.W = load_checkpoint(ckpt)
        self.tok = llama2c.Tokenizer(os.path.join(ckpt, "llama2c-tokenizer.bin"), self.cfg["vocab_size"])

    def logits(self, ids, weights=None):
        """[L, V] float64 logits of one sequence by the reference forward pass."""
        W = rf.Weights(self.W if weights is None else weights, self.ckpt)
        with torch.no_grad():
            out = rf.FORWARDS[self.cfg["architectures"][0]](self.cfg, W, torch.tensor([ids]), lambda *a, **k: None)
        unused = sorted(set(self.W) - W.used)
        if unused:
            raise SystemExit(f"{self.ckpt}: tensors not used by the forward pass: {unused[:5]}")
        return out[0]


def sample_ids(m, s):
    """(ids, n_prompt) of sample s: the prompt's tokens (BOS + encode(prompt), or the sample's
    explicit prompt_ids when the publishing implementation tokenized the prompt differently),
    then the continuation's tokens, encode(text) past encode(prompt). Checks decode(ids) == text."""
    full, p = m.tok.encode(s["text"]), m.tok.encode(s["prompt"])
    if full[:len(p)] != p:
        raise SystemExit(f"sample {s['name']}: the text's tokens do not start with the prompt's {p}")
    prompt = list(s.get("prompt_ids", p))
    ids = prompt + full[len(p):]
    back = m.tok.decode(ids)
    if back != s["text"]:
        raise SystemExit(f"sample {s['name']}: the tokens do not decode to the text: {back[:80]!r}")
    p = prompt
    if len(ids) > s["steps"]:
        raise SystemExit(f"sample {s['name']}: {len(ids)} tokens, more than the {s['steps']} steps")
    return ids, len(p)


def greedy_failures(argmax, ids, n_prompt, steps):
    """Positions where greedy decoding would leave the sample: list of (t, expected, argmax)."""
    bad = [(t, ids[t + 1], int(argmax[t])) for t in range(n_prompt - 1, len(ids) - 1) if int(argmax[t]) != ids[t + 1]]
    if len(ids) < steps and int(argmax[len(ids) - 1]) != llama2c.BOS:
        bad.append((len(ids) - 1, llama2c.BOS, int(argmax[len(ids) - 1])))
    return bad


def margins(logits, ids, n_prompt):
    """Smallest gap between the chosen token's logit and the best other one, over generated positions."""
    gaps = []
    for t in range(n_prompt - 1, len(ids)):
        target = ids[t + 1] if t + 1 < len(ids) else llama2c.BOS
        row = logits[t].clone()
        chosen = float(row[target])
        row[target] = -math.inf
        gaps.append(chosen - float(row.max()))
    return min(gaps)


def unpermuted(m):
    """The weights as a conversion without the q/k row permutation would have written them."""
    cfg, W = m.cfg, dict(m.W)
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    for name, heads in (("q_proj", cfg["num_attention_heads"]), ("k_proj", cfg["num_key_value_heads"])):
        for l in range(cfg["num_hidden_layers"]):
            k = f"model.layers.{l}.self_attn.{name}.weight"
            D = W[k].shape[1]
            W[k] = np.ascontiguousarray(W[k].reshape(heads, 2, hd // 2, D).transpose(0, 2, 1, 3).reshape(-1, D))
    return W


def describe(m, bad):
    t, want, got = bad[0]
    return (f"{len(bad)} position(s) differ; first at t={t}: expected {want} {m.tok.piece_bytes(want)!r}, "
            f"argmax {got} {m.tok.piece_bytes(got)!r}")


def generate(m, prompt_ids, steps):
    ids = list(prompt_ids)
    while len(ids) < steps:
        nxt = int(m.logits(ids)[-1].argmax())
        if nxt == llama2c.BOS:
            break
        ids.append(nxt)
    return ids


def cmd_tokens(a, spec, m):
    s = find_sample(spec, a.sample)
    ids, _ = sample_ids(m, s)
    with open(a.output, "w") as f:
        f.write(" ".join(map(str, ids)) + "\n")
    return 0


def cmd_reference(a, spec, m):
    fails = 0
    for s in spec["samples"]:
        ids, n_p = sample_ids(m, s)
        lg = m.logits(ids)
        bad = greedy_failures(lg.argmax(-1), ids, n_p, s["steps"])
        if bad:
            print(f"FAIL {spec['name']}/{s['name']}: {describe(m, bad)}")
            fails += 1
        else:
            print(f"ok {spec['name']}/{s['name']}: reference greedy output = published text "
                  f"({len(ids) - n_p} generated tokens after {n_p} prompt tokens, ends with BOS; "
                  f"smallest logit margin {margins(lg, ids, n_p):.3f})")
        if a.control:
            cbad = greedy_failures(m.logits(ids, unpermuted(m)).argmax(-1), ids, n_p, s["steps"])
            if cbad:
                print(f"ok {spec['name']}/{s['name']}: control (q/k rows left in llama2.c's adjacent-pair RoPE "
                      f"order) fails as it must: {describe(m, cbad)}")
            else:
                print(f"FAIL {spec['name']}/{s['name']}: the control without the RoPE permutation also reproduces "
                      "the text, so this check cannot see a wrong conversion")
                fails += 1
        if a.generate:
            gen = generate(m, ids[:n_p], s["steps"])
            same = gen == ids
            print(f"{'ok' if same else 'FAIL'} {spec['name']}/{s['name']}: step-by-step greedy generation "
                  f"{'gives the same ids' if same else 'differs: ' + repr(m.tok.decode(gen)[:200])}")
            fails += not same
    return 1 if fails else 0


def cmd_ess(a, spec, m):
    import h5py
    s = find_sample(spec, a.sample)
    ids, n_p = sample_ids(m, s)
    with h5py.File(a.results, "r") as f:
        if "model" not in f:
            print(f"FAIL: {a.results} has no /model group (ess analyze stores the predictions there)")
            return 1
        g = f["model"]
        got = {k: g[k][...] for k in ("input_ids", "argmax", "logprobs")}
        loss, ppl = float(g.attrs["loss"]), float(g.attrs["perplexity"])
    L = len(ids)
    fails = []
    if got["input_ids"].shape != (1, L) or not np.array_equal(got["input_ids"][0], ids):
        fails.append(f"/model/input_ids {got['input_ids'].shape} differ from the sample's tokens (1, {L})")
    if got["argmax"].shape != (1, L) or got["logprobs"].shape != (1, L):
        fails.append(f"/model/argmax {got['argmax'].shape} or /model/logprobs {got['logprobs'].shape} is not (1, {L})")
    else:
        bad = greedy_failures(got["argmax"][0], ids, n_p, s["steps"])
        if bad:
            fails.append("ess argmax: " + describe(m, bad))
        ref = torch.log_softmax(m.logits(ids), -1)
        ref_lp = np.array([float(ref[t, ids[t + 1]]) for t in range(L - 1)])
        err = np.abs(got["logprobs"][0, :L - 1] - ref_lp).max()
        if not err <= 1e-8:
            fails.append(f"/model/logprobs differ from the reference's log-softmax by {err:.2e} (> 1e-8)")
        want_loss = -float(np.mean(got["logprobs"][0, :L - 1]))
        if not abs(loss - want_loss) <= 1e-9 * max(1.0, abs(want_loss)):
            fails.append(f"loss {loss} is not -mean(logprobs[:, :L-1]) = {want_loss}")
        if not abs(ppl - math.exp(loss)) <= 1e-9 * math.exp(loss):
            fails.append(f"perplexity {ppl} is not exp(loss) = {math.exp(loss)}")
    for msg in fails:
        print(f"FAIL {spec['name']}/{s['name']}: {msg}")
    if not fails:
        print(f"ok {spec['name']}/{s['name']}: ess analyze's argmax reproduces the published greedy text "
              f"({L - n_p} generated tokens); log-probs match the reference (loss {loss:.4f}, perplexity {ppl:.3f})")
    return 1 if fails else 0


def cmd_fake_results(a, spec, m):
    """A results file whose /model group the reference computed (the documented layout), to test
    `ess` itself; --corrupt POS changes the argmax at generated position POS."""
    import h5py
    s = find_sample(spec, a.sample)
    ids, n_p = sample_ids(m, s)
    lsm = torch.log_softmax(m.logits(ids), -1)
    L = len(ids)
    lp = np.full((1, L), np.nan)
    lp[0, :L - 1] = [float(lsm[t, ids[t + 1]]) for t in range(L - 1)]
    am = lsm.argmax(-1).numpy().astype(np.int32)[None, :]
    if a.corrupt is not None:
        am[0, n_p - 1 + a.corrupt] = (am[0, n_p - 1 + a.corrupt] + 1) % m.cfg["vocab_size"]
    loss = -float(np.mean(lp[0, :L - 1]))
    with h5py.File(a.output, "w") as f:
        g = f.create_group("model")
        g["input_ids"] = np.array([ids], dtype=np.int32)
        g["argmax"] = am
        g["logprobs"] = lp
        g.attrs["loss"], g.attrs["perplexity"] = loss, math.exp(loss)
    return 0


def find_sample(spec, name):
    for s in spec["samples"]:
        if s["name"] == name:
            return s
    raise SystemExit(f"{spec['name']}: no sample '{name}' ({', '.join(s['name'] for s in spec['samples'])})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tokens")
    p.add_argument("spec"), p.add_argument("ckpt"), p.add_argument("sample"), p.add_argument("-o", "--output", required=True)
    p = sub.add_parser("reference")
    p.add_argument("spec"), p.add_argument("ckpt"), p.add_argument("--generate", action="store_true")
    p.add_argument("--control", action="store_true", help="also show that an unpermuted conversion fails")
    p = sub.add_parser("ess")
    p.add_argument("spec"), p.add_argument("ckpt"), p.add_argument("sample"), p.add_argument("results")
    p = sub.add_parser("fake-results")
    p.add_argument("spec"), p.add_argument("ckpt"), p.add_argument("sample"), p.add_argument("-o", "--output", required=True)
    p.add_argument("--corrupt", type=int, metavar="POS")
    a = ap.parse_args(argv)
    with open(a.spec) as f:
        spec = json.load(f)
    m = Model(a.ckpt)
    cmds = {"tokens": cmd_tokens, "reference": cmd_reference, "ess": cmd_ess, "fake-results": cmd_fake_results}
    return cmds[a.cmd](a, spec, m)


if __name__ == "__main__":
    sys.exit(main())
