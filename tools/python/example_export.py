#!/usr/bin/python3
"""Example: export the operators of your own PyTorch model with forward hooks, then run
`ess compute` on the file.

    /usr/bin/python3 tools/python/example_export.py -o ops.h5 [--seq-len 64] [--batch 2] [--check]
    ess compute ops.h5 -o results.h5

The tiny model below has three sequence mixers:
  * a causal softmax attention layer (4 heads): q, k are captured from the q_proj / k_proj
    outputs (before the scores) and reshaped to [B, H, L, d];
  * a selective diagonal SSM in the Mamba style: dt (after its softplus), B and C are captured
    from the submodules that produce them, A = -exp(A_log) is read from the parameters;
  * a depthwise short causal convolution (K = 4): h is the conv weight, flipped so that h[m]
    multiplies x_{t-m}.
Hooks are plain `register_forward_hook`s on the submodules that produce each tensor, so the same
pattern works on any model: find the module whose output is the tensor the operator needs
"as the layer uses it" (after feature maps, softplus, scaling), and hook it.

With --check the script also verifies, with ess_writer.dense_T, that each captured operator
applied to the layer's values reproduces the layer's own output (before its output projection).
"""
import argparse
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ess_writer import OperatorFileWriter, dense_T  # noqa: E402


class CausalAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.mix = nn.Identity()  # marks the mixed values (before o_proj) for --check

    def forward(self, x):
        B, L, _ = x.shape
        split = lambda t: t.view(B, L, self.heads, self.hd).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        s = s.masked_fill(torch.ones(L, L, dtype=torch.bool).triu(1), float("-inf"))
        o = self.mix(torch.softmax(s, -1) @ v)  # [B, H, L, hd]
        return self.o_proj(o.transpose(1, 2).reshape(B, L, -1))


class SelectiveSSM(nn.Module):
    """h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t, y_t = C_t . h_t (+ D x_t, gated): Mamba's S6."""

    def __init__(self, dim, state):
        super().__init__()
        self.dt_proj = nn.Linear(dim, dim)
        self.dt_act = nn.Softplus()
        self.B_proj = nn.Linear(dim, state, bias=False)
        self.C_proj = nn.Linear(dim, state, bias=False)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(dim, 1))
        self.D = nn.Parameter(torch.ones(dim))
        self.gate = nn.Linear(dim, dim, bias=False)
        self.mix = nn.Identity()

    def forward(self, x):
        dt = self.dt_act(self.dt_proj(x))  # [B, L, C]
        Bm, Cm = self.B_proj(x), self.C_proj(x)  # [B, L, N]
        A = -torch.exp(self.A_log)  # [C, N]
        h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
        ys = []
        for t in range(x.shape[1]):
            h = torch.exp(dt[:, t, :, None] * A) * h + dt[:, t, :, None] * Bm[:, t, None, :] * x[:, t, :, None]
            ys.append((h * Cm[:, t, None, :]).sum(-1))
        y = self.mix(torch.stack(ys, 1))  # the scan output: this is T x
        return (y + self.D * x) * F.silu(self.gate(x))  # D skip and output gate: not part of T


class ShortConv(nn.Module):
    def __init__(self, dim, K):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, K, groups=dim, padding=K - 1, bias=False)
        self.mix = nn.Identity()

    def forward(self, x):
        return self.mix(self.conv(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2))


class TinyModel(nn.Module):
    def __init__(self, vocab=64, dim=32, heads=4, state=8, K=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList([CausalAttention(dim, heads), SelectiveSSM(dim, state), ShortConv(dim, K)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in self.layers])
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for norm, layer in zip(self.norms, self.layers):
            x = x + layer(norm(x))
        return self.head(x)


def main():
    ap = argparse.ArgumentParser(description="export a tiny PyTorch model's operators with forward hooks")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="verify T x against each layer's own output")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    model = TinyModel().double().eval()
    attn, ssm, conv = model.layers

    captured = {}

    def keep(key):
        def hook(module, inputs, output):
            captured[key] = output.detach()
            captured[key + ".input"] = inputs[0].detach()
        return hook

    handles = [attn.q_proj.register_forward_hook(keep("q")), attn.k_proj.register_forward_hook(keep("k")),
               attn.v_proj.register_forward_hook(keep("v")), attn.mix.register_forward_hook(keep("attn_out")),
               ssm.dt_act.register_forward_hook(keep("dt")), ssm.B_proj.register_forward_hook(keep("B")),
               ssm.C_proj.register_forward_hook(keep("C")), ssm.mix.register_forward_hook(keep("ssm_out")),
               conv.conv.register_forward_hook(keep("conv_in")), conv.mix.register_forward_hook(keep("conv_out"))]
    tokens = torch.randint(0, 64, (args.batch, args.seq_len))
    with torch.no_grad():
        model(tokens)
    for h in handles:
        h.remove()

    B, L = tokens.shape
    heads, hd = attn.heads, attn.hd
    split = lambda t: t.view(B, L, heads, hd).transpose(1, 2)  # noqa: E731  [B, L, H*d] -> [B, H, L, d]
    ops = {
        "layers.0.attn": ("softmax_attention", dict(q=split(captured["q"]), k=split(captured["k"]),
                                                    scale=1 / math.sqrt(hd))),
        "layers.1.ssm": ("mamba", dict(dt=captured["dt"].transpose(1, 2), A=-torch.exp(ssm.A_log.detach()),
                                       B=captured["B"], C=captured["C"])),
        # nn.Conv1d with padding K-1 computes y_t = sum_k w[k] x_{t-(K-1)+k}: h[m] = w[K-1-m]
        "layers.2.conv": ("conv", dict(h=conv.conv.weight.detach()[:, 0, :].flip(-1))),
    }
    with OperatorFileWriter(args.output, seq_len=L) as w:
        w.add_softmax_attention("layers.0.attn", **ops["layers.0.attn"][1], layer_index=0)
        w.add_mamba("layers.1.ssm", **ops["layers.1.ssm"][1], layer_index=1)
        w.add_conv("layers.2.conv", **ops["layers.2.conv"][1], seq_len=L, layer_index=2)

    if args.check:
        # value per channel/head: attention uses v [B, H, L, d] (each of the d value channels shares T),
        # the SSM and conv act on their input x [B, L, C] channel by channel.
        vals = {"layers.0.attn": (split(captured["v"]), captured["attn_out"]),
                "layers.1.ssm": (captured["B.input"].transpose(1, 2)[..., None],
                                 captured["ssm_out"].transpose(1, 2)[..., None]),
                "layers.2.conv": (captured["conv_in.input"][..., None], captured["conv_out"].transpose(1, 2)[..., None])}
        for name, (fam, kw) in ops.items():
            T = torch.tensor(dense_T(fam, seq_len=L, **kw))
            x, y = vals[name]
            err = (T @ x - y).abs().max().item() / max(1.0, y.abs().max().item())
            print(f"check {name}: max rel |T x - layer output| = {err:.1e}", file=sys.stderr)
            if not err <= 1e-10:  # (NaN fails too)
                sys.exit(f"check failed for {name}")
    print(args.output)


if __name__ == "__main__":
    main()
