#!/usr/bin/python3
"""Trains a tiny Llama-layout model on multi-query associative recall (the same MQAR layout as
`ess analyze --mqar`: keys from [1, V/2), values from [V/2, V), kv context then query pairs) and
writes it as a Hugging Face checkpoint (config.json + model.safetensors), so the demo can measure
the ESS of a model that has actually learned to recall.

    train_mqar.py OUTDIR [--steps 1500] [--seed 0]

CPU only, a few minutes on 2 cores. Deterministic for a given seed and torch version.
"""
import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from st_io import write_safetensors  # noqa: E402

V, D, H, HD, I, NL = 64, 64, 4, 16, 128, 2
KV, LEN = 8, 64


def mqar_batch(n, gen):
    keys = torch.stack([torch.randperm(V // 2 - 1, generator=gen)[:KV] + 1 for _ in range(n)])
    vals = torch.randint(V // 2, V, (n, KV), generator=gen)
    ctx = torch.stack([keys, vals], -1).reshape(n, 2 * KV)
    nq = (LEN - 2 * KV) // 2
    pick = torch.randint(0, KV, (n, nq), generator=gen)
    qk, qv = keys.gather(1, pick), vals.gather(1, pick)
    seq = torch.cat([ctx, torch.stack([qk, qv], -1).reshape(n, 2 * nq)], 1)
    tgt = torch.full_like(seq, -100)
    tgt[:, 2 * KV::2] = qv  # at a query key, predict its value
    return seq, tgt


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        p = torch.nn.Parameter
        self.emb = p(torch.randn(V, D) * 0.5)
        self.layers = torch.nn.ModuleList()
        for _ in range(NL):
            m = torch.nn.Module()
            m.n1, m.n2 = p(torch.ones(D)), p(torch.ones(D))
            m.q, m.k, m.v = (p(torch.randn(H * HD, D) / math.sqrt(D)) for _ in range(3))
            m.o = p(torch.randn(D, H * HD) / math.sqrt(H * HD))
            m.g, m.u = p(torch.randn(I, D) / math.sqrt(D)), p(torch.randn(I, D) / math.sqrt(D))
            m.d = p(torch.randn(D, I) / math.sqrt(I) * 0.5)
            self.layers.append(m)
        self.norm = p(torch.ones(D))
        self.head = p(torch.randn(V, D) / math.sqrt(D))
        inv = 1.0 / 10000.0 ** (torch.arange(0, HD, 2) / HD)
        ang = torch.arange(LEN)[:, None] * inv[None]
        self.register_buffer("cos", torch.cat([ang, ang], -1).cos())
        self.register_buffer("sin", torch.cat([ang, ang], -1).sin())

    @staticmethod
    def rms(x, w, eps=1e-5):
        return w * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)

    def rope(self, x):
        h = x.shape[-1] // 2
        return x * self.cos + torch.cat([-x[..., h:], x[..., :h]], -1) * self.sin

    def forward(self, tok):
        B, L = tok.shape
        x = self.emb[tok]
        mask = torch.ones(L, L, dtype=torch.bool).tril()
        for m in self.layers:
            y = self.rms(x, m.n1)
            q = self.rope((y @ m.q.T).view(B, L, H, HD).transpose(1, 2))
            k = self.rope((y @ m.k.T).view(B, L, H, HD).transpose(1, 2))
            v = (y @ m.v.T).view(B, L, H, HD).transpose(1, 2)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(HD)
            a = torch.softmax(s.masked_fill(~mask, float("-inf")), -1)
            x = x + (a @ v).transpose(1, 2).reshape(B, L, H * HD) @ m.o.T
            y = self.rms(x, m.n2)
            x = x + (torch.nn.functional.silu(y @ m.g.T) * (y @ m.u.T)) @ m.d.T
        return self.rms(x, self.norm) @ self.head.T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(a.seed)
    model = Model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=a.steps, pct_start=0.1)
    for step in range(a.steps):
        seq, tgt = mqar_batch(64, gen)
        logits = model(seq)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == a.steps - 1:
            with torch.no_grad():
                acc = (logits.argmax(-1) == tgt)[tgt >= 0].float().mean().item()
            print(f"step {step:5d}  loss {loss.item():.3f}  query accuracy {acc:.3f}", flush=True)
    W = {"model.embed_tokens.weight": model.emb, "model.norm.weight": model.norm, "lm_head.weight": model.head}
    for l, m in enumerate(model.layers):
        p = f"model.layers.{l}."
        W.update({p + "input_layernorm.weight": m.n1, p + "post_attention_layernorm.weight": m.n2,
                  p + "self_attn.q_proj.weight": m.q, p + "self_attn.k_proj.weight": m.k,
                  p + "self_attn.v_proj.weight": m.v, p + "self_attn.o_proj.weight": m.o,
                  p + "mlp.gate_proj.weight": m.g, p + "mlp.up_proj.weight": m.u, p + "mlp.down_proj.weight": m.d})
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": D,
           "intermediate_size": I, "num_hidden_layers": NL, "num_attention_heads": H, "num_key_value_heads": H,
           "head_dim": HD, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": LEN,
           "tie_word_embeddings": False, "hidden_act": "silu",
           "ess_note": f"trained by tools/reference/train_mqar.py on MQAR kv={KV}, len={LEN}, steps={a.steps}"}
    os.makedirs(a.outdir, exist_ok=True)
    json.dump(cfg, open(os.path.join(a.outdir, "config.json"), "w"), indent=2)
    write_safetensors(os.path.join(a.outdir, "model.safetensors"),
                      {k: v.detach().double().numpy() for k, v in W.items()}, "F32")
    print(a.outdir)


if __name__ == "__main__":
    main()
