#!/usr/bin/python3
"""Independent float64 PyTorch forward pass of Hugging Face checkpoints, for testing `ess analyze`.

    reference_forward.py CKPT_DIR --tokens FILE -o EXPECTED.h5 [--check] [--activations]

Architectures (config.json "architectures"[0]): MambaForCausalLM, FalconMambaForCausalLM,
Mamba2ForCausalLM, LlamaForCausalLM, MistralForCausalLM, GLAForCausalLM (flash-linear-attention).
The forward passes are written out here from the upstream semantics (README.md is the spec):
no transformers / fla import, every weight upcast to float64 as stored.

EXPECTED.h5 is an operator file (format "ess-operators", readable by `ess compute` and
tools/python/ess_reference.py) with one /layers/<name> group per sequence mixer holding that
mixer's operator tensors, plus at the root:
    logits  [B, L, vocab] float64     tokens  [B, L] int64
    attrs: architecture, checkpoint, tokens_file
With --activations, /activations/<layer name>/{mixer_input, scan_input, scan_output, mixer_output}
hold each mixer's tensors for debugging (see README.md for their exact definitions).
With --check, each operator's dense T (tools/python/ess_writer.dense_T, closed form) applied to
the scan input is compared with the scan output of the forward pass (its recurrence / attention);
the script exits 1 if they differ by more than 1e-10 relative.

Tokens file: one sequence per line, whitespace-separated integer ids, all lines the same length.
"""
import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
from st_io import load_checkpoint  # noqa: E402
from ess_writer import OperatorFileWriter, dense_T  # noqa: E402

torch.set_default_dtype(torch.float64)


class Unsupported(SystemExit):
    pass


def need(cond, msg):
    if not cond:
        raise Unsupported(f"reference_forward: {msg}")


# ---------------------------------------------------------------------------------------------
# building blocks


def rms(x, w=None, eps=1e-6):
    """RMSNorm over the last axis: x / sqrt(mean(x^2) + eps), times w when given."""
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if w is None else y * w


def silu(x):
    return x * torch.sigmoid(x)


def causal_depthwise_conv(x, weight, bias):
    """x [B, L, C], weight [C, 1, K], bias [C] or None -> [B, L, C]:
    out[t, c] = sum_{k=0..K-1} weight[c, 0, k] * x[t - (K-1) + k, c] + bias[c]  (x[<0] = 0)."""
    B, L, C = x.shape
    K = weight.shape[-1]
    xp = F.pad(x, (0, 0, K - 1, 0))  # zeros before t = 0
    out = torch.zeros_like(x)
    for k in range(K):
        out = out + weight[:, 0, k] * xp[:, k:k + L]
    return out if bias is None else out + bias


class Weights:
    def __init__(self, W, ckpt):
        self.W, self.ckpt, self.used = W, ckpt, set()

    def __call__(self, name, shape=None):
        need(name in self.W, f"{self.ckpt}: checkpoint has no tensor '{name}'")
        t = torch.from_numpy(self.W[name])
        if shape is not None:
            need(list(t.shape) == list(shape), f"{self.ckpt}: tensor '{name}' has shape {list(t.shape)}, config "
                                               f"implies {list(shape)}")
        self.used.add(name)
        return t

    def get(self, name, shape=None):
        return self(name, shape) if name in self.W else None

    def first(self, *names, shape=None):
        for n in names:
            if n in self.W:
                return self(n, shape)
        need(False, f"{self.ckpt}: checkpoint has none of {names}")


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def lm_head(W, cfg, h, emb_name, V, D):
    head = W.get("lm_head.weight", [V, D])
    if head is None:
        need(cfg.get("tie_word_embeddings", True), "no lm_head.weight and tie_word_embeddings is false")
        head = W(emb_name)
    return h @ head.T


# ---------------------------------------------------------------------------------------------
# Mamba / FalconMamba


def mamba_forward(cfg, W, tokens, rec):
    falcon = cfg["architectures"][0] == "FalconMambaForCausalLM"
    V, D, N, nl = cfg["vocab_size"], cfg["hidden_size"], cfg["state_size"], cfg["num_hidden_layers"]
    E = int(cfg.get("intermediate_size") or cfg.get("expand", 2) * D)
    K = cfg.get("conv_kernel", 4)
    R = cfg.get("time_step_rank", "auto")
    R = math.ceil(D / 16) if R == "auto" else int(R)
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    mixer_eps = cfg.get("mixer_rms_eps", 1e-6)
    need(cfg.get("hidden_act", "silu") in ("silu", "swish"), f"hidden_act {cfg.get('hidden_act')} not supported")
    emb_name = "backbone.embeddings.weight" if "backbone.embeddings.weight" in W.W else "backbone.embedding.weight"
    h = W(emb_name, [V, D])[tokens]
    Bsz, L = tokens.shape
    for l in range(nl):
        p = f"backbone.layers.{l}."
        res = h
        x = rms(h, W(p + "norm.weight", [D]), eps)
        proj = linear(x, W(p + "mixer.in_proj.weight", [2 * E, D]), W.get(p + "mixer.in_proj.bias", [2 * E]))
        xs, z = proj[..., :E], proj[..., E:]
        xs = silu(causal_depthwise_conv(xs, W(p + "mixer.conv1d.weight", [E, 1, K]),
                                        W.get(p + "mixer.conv1d.bias", [E])))
        xdbl = xs @ W(p + "mixer.x_proj.weight", [R + 2 * N, E]).T
        dtr, Bm, Cm = xdbl[..., :R], xdbl[..., R:R + N], xdbl[..., R + N:]
        if falcon:  # FalconMamba: weightless RMS norms of B, C and the dt input
            Bm, Cm, dtr = rms(Bm, None, mixer_eps), rms(Cm, None, mixer_eps), rms(dtr, None, mixer_eps)
        dt = F.softplus(linear(dtr, W(p + "mixer.dt_proj.weight", [E, R]), W(p + "mixer.dt_proj.bias", [E])))
        A = -torch.exp(W(p + "mixer.A_log", [E, N]))
        s = torch.zeros(Bsz, E, N)
        ys = []
        for t in range(L):  # h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t ; y_t = C_t . h_t
            s = torch.exp(dt[:, t, :, None] * A) * s + dt[:, t, :, None] * Bm[:, t, None, :] * xs[:, t, :, None]
            ys.append((s * Cm[:, t, None, :]).sum(-1))
        scan = torch.stack(ys, 1)  # [B, L, E]
        y = (scan + xs * W(p + "mixer.D", [E])) * silu(z)
        out = linear(y, W(p + "mixer.out_proj.weight", [D, E]), W.get(p + "mixer.out_proj.bias", [D]))
        h = res + out
        rec(f"backbone.layers.{l}.mixer", "mamba", l, dict(dt=dt.transpose(1, 2), A=A, B=Bm, C=Cm),
            mixer_input=x, scan_input=xs.transpose(1, 2)[..., None], scan_output=scan.transpose(1, 2)[..., None],
            mixer_output=out)
    h = rms(h, W("backbone.norm_f.weight", [D]), eps)
    return lm_head(W, cfg, h, emb_name, V, D)


# ---------------------------------------------------------------------------------------------
# Mamba2


def mamba2_forward(cfg, W, tokens, rec):
    V, D, N, nl = cfg["vocab_size"], cfg["hidden_size"], cfg["state_size"], cfg["num_hidden_layers"]
    G, H, P = cfg.get("n_groups", 1), cfg["num_heads"], cfg["head_dim"]
    E = int(cfg.get("expand", 2) * D)
    K = cfg.get("conv_kernel", 4)
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    lo, hi = cfg.get("time_step_limit", [0.0, float("inf")])
    need(H * P == E, f"num_heads * head_dim = {H * P} != expand * hidden_size = {E}")
    need(H % G == 0, f"num_heads {H} not divisible by n_groups {G}")
    need(cfg.get("hidden_act", "silu") in ("silu", "swish"), f"hidden_act {cfg.get('hidden_act')} not supported")
    conv_dim = E + 2 * G * N
    emb_name = "backbone.embeddings.weight" if "backbone.embeddings.weight" in W.W else "backbone.embedding.weight"
    h = W(emb_name, [V, D])[tokens]
    Bsz, L = tokens.shape
    grp = torch.arange(H) // (H // G)
    for l in range(nl):
        p = f"backbone.layers.{l}."
        res = h
        x = rms(h, W(p + "norm.weight", [D]), eps)
        proj = linear(x, W(p + "mixer.in_proj.weight", [E + conv_dim + H, D]),
                      W.get(p + "mixer.in_proj.bias", [E + conv_dim + H]))
        gate, xBC, dt = proj[..., :E], proj[..., E:E + conv_dim], proj[..., E + conv_dim:]
        xBC = silu(causal_depthwise_conv(xBC, W(p + "mixer.conv1d.weight", [conv_dim, 1, K]),
                                         W.get(p + "mixer.conv1d.bias", [conv_dim])))
        xs, Bm, Cm = xBC[..., :E], xBC[..., E:E + G * N], xBC[..., E + G * N:]
        dt = torch.clamp(F.softplus(dt + W(p + "mixer.dt_bias", [H])), lo, hi)  # [B, L, H]
        A = -torch.exp(W(p + "mixer.A_log", [H]))
        xh = xs.reshape(Bsz, L, H, P)
        Bg, Cg = Bm.reshape(Bsz, L, G, N), Cm.reshape(Bsz, L, G, N)
        s = torch.zeros(Bsz, H, P, N)
        ys = []
        for t in range(L):  # per head: h_t = exp(dt_t A_h) h_{t-1} + dt_t x_t B_t^T ; y_t = h_t C_t
            Bt, Ct = Bg[:, t, grp], Cg[:, t, grp]  # [B, H, N]
            s = torch.exp(dt[:, t, :, None, None] * A[:, None, None]) * s \
                + dt[:, t, :, None, None] * xh[:, t, :, :, None] * Bt[:, :, None, :]
            ys.append((s * Ct[:, :, None, :]).sum(-1))
        scan = torch.stack(ys, 1)  # [B, L, H, P]
        y = (scan + xh * W(p + "mixer.D", [H])[:, None]).reshape(Bsz, L, E)
        y = rms(y * silu(gate), W(p + "mixer.norm.weight", [E]), eps)  # gated RMSNorm over the full width E
        out = linear(y, W(p + "mixer.out_proj.weight", [D, E]), W.get(p + "mixer.out_proj.bias", [D]))
        h = res + out
        rec(f"backbone.layers.{l}.mixer", "mamba2", l,
            dict(dt=dt.transpose(1, 2), A=A, B=Bg.permute(0, 2, 1, 3), C=Cg.permute(0, 2, 1, 3)),
            mixer_input=x, scan_input=xh.permute(0, 2, 1, 3), scan_output=scan.permute(0, 2, 1, 3), mixer_output=out)
    h = rms(h, W("backbone.norm_f.weight", [D]), eps)
    return lm_head(W, cfg, h, emb_name, V, D)


# ---------------------------------------------------------------------------------------------
# Llama / Mistral


def rope_params(cfg):
    """(theta, scaling dict) from transformers v5 `rope_parameters` or legacy rope_theta/rope_scaling."""
    if isinstance(cfg.get("rope_parameters"), dict):
        rp = dict(cfg["rope_parameters"])
        need("full_attention" not in rp and "sliding_attention" not in rp, "per-layer-type rope_parameters")
        return float(rp.get("rope_theta", cfg.get("rope_theta", 10000.0))), rp
    return float(cfg.get("rope_theta", 10000.0)), dict(cfg.get("rope_scaling") or {})


def rope_inv_freq(cfg, hd):
    theta, sc = rope_params(cfg)
    need(float(sc.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))) == 1.0,
         "partial_rotary_factor != 1 not supported")
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
    kind = sc.get("rope_type", sc.get("type", "default"))
    if kind == "default":
        return inv
    if kind == "linear":
        return inv / float(sc["factor"])
    if kind == "llama3":
        f, lo, hi = float(sc["factor"]), float(sc["low_freq_factor"]), float(sc["high_freq_factor"])
        orig = float(sc["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        lo_wl, hi_wl = orig / lo, orig / hi
        scaled = torch.where(wavelen > lo_wl, inv / f, inv)
        smooth = (orig / wavelen - lo) / (hi - lo)
        mid = (1 - smooth) * scaled / f + smooth * scaled
        is_mid = (wavelen >= hi_wl) & (wavelen <= lo_wl)
        return torch.where(is_mid, mid, scaled)
    need(False, f"rope type '{kind}' not supported (default, linear, llama3)")


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


def llama_forward(cfg, W, tokens, rec):
    V, D, nl = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or D // H
    I = cfg["intermediate_size"]
    eps = cfg.get("rms_norm_eps", 1e-6)
    need(H % Hkv == 0, f"num_attention_heads {H} not divisible by num_key_value_heads {Hkv}")
    need(cfg.get("hidden_act", "silu") in ("silu", "swish"), f"hidden_act {cfg.get('hidden_act')} not supported")
    mistral = cfg["architectures"][0] == "MistralForCausalLM"
    window = int(cfg.get("sliding_window") or 0) if mistral else 0
    attn_bias = bool(cfg.get("attention_bias", False))
    mlp_bias = bool(cfg.get("mlp_bias", False))
    h = W("model.embed_tokens.weight", [V, D])[tokens]
    Bsz, L = tokens.shape
    ang = torch.arange(L, dtype=torch.float64)[:, None] * rope_inv_freq(cfg, hd)[None]  # [L, hd/2]
    cos, sin = torch.cos(torch.cat([ang, ang], -1)), torch.sin(torch.cat([ang, ang], -1))
    i, j = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    allowed = (j <= i) & ((i - j < window) if window else True)
    scale = hd ** -0.5
    for l in range(nl):
        p = f"model.layers.{l}."
        a = p + "self_attn."
        res = h
        x = rms(h, W(p + "input_layernorm.weight", [D]), eps)
        bias = lambda n, s: W(n, [s]) if attn_bias else None  # noqa: E731
        q = linear(x, W(a + "q_proj.weight", [H * hd, D]), bias(a + "q_proj.bias", H * hd))
        k = linear(x, W(a + "k_proj.weight", [Hkv * hd, D]), bias(a + "k_proj.bias", Hkv * hd))
        v = linear(x, W(a + "v_proj.weight", [Hkv * hd, D]), bias(a + "v_proj.bias", Hkv * hd))
        q = q.reshape(Bsz, L, H, hd).transpose(1, 2)
        k = k.reshape(Bsz, L, Hkv, hd).transpose(1, 2)
        v = v.reshape(Bsz, L, Hkv, hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // Hkv, dim=1)  # head h uses KV head h // (H / Hkv)
        v = v.repeat_interleave(H // Hkv, dim=1)
        s = (q @ k.transpose(-1, -2)) * scale
        att = torch.softmax(s.masked_fill(~allowed, float("-inf")), -1)
        o = att @ v  # [B, H, L, hd]
        out = linear(o.transpose(1, 2).reshape(Bsz, L, H * hd), W(a + "o_proj.weight", [D, H * hd]),
                     bias(a + "o_proj.bias", D))
        h = res + out
        rec(f"model.layers.{l}.self_attn", "softmax_attention", l, dict(q=q, k=k, scale=scale, window=window),
            mixer_input=x, scan_input=v, scan_output=o, mixer_output=out)
        res = h
        x = rms(h, W(p + "post_attention_layernorm.weight", [D]), eps)
        mb = lambda n, s: W(n, [s]) if mlp_bias else None  # noqa: E731
        m = silu(linear(x, W(p + "mlp.gate_proj.weight", [I, D]), mb(p + "mlp.gate_proj.bias", I))) \
            * linear(x, W(p + "mlp.up_proj.weight", [I, D]), mb(p + "mlp.up_proj.bias", I))
        h = res + linear(m, W(p + "mlp.down_proj.weight", [D, I]), mb(p + "mlp.down_proj.bias", D))
    h = rms(h, W("model.norm.weight", [D]), eps)
    return lm_head(W, cfg, h, "model.embed_tokens.weight", V, D)


# ---------------------------------------------------------------------------------------------
# GLA (flash-linear-attention)

FEATURE_MAPS = {None: None, "relu": F.relu, "sigmoid": torch.sigmoid, "silu": silu, "swish": silu}


def gla_forward(cfg, W, tokens, rec):
    V, D, nl, H = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg.get("num_heads", 4)
    Hkv = cfg.get("num_kv_heads") or H
    dk, dv = int(D * cfg.get("expand_k", 0.5)), int(D * cfg.get("expand_v", 1.0))
    need(dk % H == 0 and dv % H == 0 and H % Hkv == 0, "key/value dims or heads not divisible")
    hk, hv, grp = dk // H, dv // H, H // Hkv
    I = cfg.get("intermediate_size")
    if I is None:
        I = int(D * (cfg.get("hidden_ratio") or 4) * 2 / 3)
        I = 256 * ((I + 255) // 256)
    eps = cfg.get("norm_eps", 1e-6)
    rank, normalizer = 16, 16  # GatedLinearAttention defaults (not config fields)
    clamp_min = cfg.get("clamp_min")
    need(cfg.get("hidden_act", "swish") in ("swish", "silu"), f"hidden_act {cfg.get('hidden_act')} not supported")
    conv = bool(cfg.get("use_short_conv", False))
    K = int(cfg.get("conv_size", 4))
    conv_bias = bool(cfg.get("conv_bias", False))
    need(cfg.get("attn") is None, "hybrid GLA models (config.attn) not supported")
    need(cfg.get("feature_map") in FEATURE_MAPS, f"feature_map {cfg.get('feature_map')} not supported")
    fmap = FEATURE_MAPS[cfg.get("feature_map")]
    h = W("model.embeddings.weight", [V, D])[tokens]
    Bsz, L = tokens.shape
    heads = lambda t, d: t.reshape(Bsz, L, -1, d).transpose(1, 2)  # noqa: E731  [B, L, n*d] -> [B, n, L, d]
    for l in range(nl):
        p = f"model.layers.{l}."
        a = p + "attn."
        res = h
        x = rms(h, W(p + "attn_norm.weight", [D]), eps)
        q = x @ W(a + "q_proj.weight", [dk, D]).T
        k = x @ W(a + "k_proj.weight", [dk // grp, D]).T
        v = x @ W(a + "v_proj.weight", [dv // grp, D]).T
        if conv:  # fla ShortConvolution on each projection: causal depthwise conv (bias if conv_bias), SiLU
            q, k, v = (silu(causal_depthwise_conv(t, W(a + f"{n}_conv1d.weight", [t.shape[-1], 1, K]),
                                                  W(a + f"{n}_conv1d.bias", [t.shape[-1]]) if conv_bias else None))
                       for n, t in (("q", q), ("k", k), ("v", v)))
        q, k, v = heads(q, hk), heads(k, hk), heads(v, hv)
        gk = linear(x @ W(a + "gk_proj.0.weight", [rank, D]).T, W(a + "gk_proj.1.weight", [dk // grp, rank]),
                    W(a + "gk_proj.1.bias", [dk // grp]))
        gk = heads(gk, hk)
        if grp > 1:  # '... (h d) -> ... (h g) d': head i uses KV head i // grp
            k, v, gk = (t.repeat_interleave(grp, dim=1) for t in (k, v, gk))
        gk = F.logsigmoid(gk) / normalizer
        if clamp_min is not None:
            gk = torch.clamp_min(gk, clamp_min)
        if fmap is not None:
            q, k = fmap(q), fmap(k)
        qs = q * hk ** -0.5  # the kernels' default scale, folded into q
        S = torch.zeros(Bsz, H, hk, hv)
        os_ = []
        for t in range(L):  # S_t = diag(exp(gk_t)) S_{t-1} + k_t v_t^T ; o_t = S_t^T (q_t * scale)
            S = torch.exp(gk[:, :, t, :, None]) * S + k[:, :, t, :, None] * v[:, :, t, None, :]
            os_.append((qs[:, :, t, :, None] * S).sum(-2))
        o = torch.stack(os_, 2)  # [B, H, L, hv]
        nw = W.first(a + "g_norm_swish_gate.weight", a + "g_norm.weight", shape=[hv]) \
            if cfg.get("elementwise_affine", True) else None
        on = rms(o, nw, eps)  # RMSNorm per head over hv
        if cfg.get("use_output_gate", True):
            on = on * silu(heads(x @ W(a + "g_proj.weight", [dv, D]).T, hv))
        out = on.transpose(1, 2).reshape(Bsz, L, dv) @ W(a + "o_proj.weight", [D, dv]).T
        h = res + out
        rec(f"model.layers.{l}.attn", "gla", l, dict(q=qs, k=k, log_decay=gk),
            mixer_input=x, scan_input=v, scan_output=o, mixer_output=out)
        res = h
        x = rms(h, W(p + "mlp_norm.weight", [D]), eps)
        m = silu(x @ W(p + "mlp.gate_proj.weight", [I, D]).T) * (x @ W(p + "mlp.up_proj.weight", [I, D]).T)
        h = res + m @ W(p + "mlp.down_proj.weight", [D, I]).T
    h = rms(h, W("model.norm.weight", [D]), eps)
    return lm_head(W, cfg, h, "model.embeddings.weight", V, D)


FORWARDS = {"MambaForCausalLM": mamba_forward, "FalconMambaForCausalLM": mamba_forward,
            "Mamba2ForCausalLM": mamba2_forward, "LlamaForCausalLM": llama_forward,
            "MistralForCausalLM": llama_forward, "GLAForCausalLM": gla_forward}


def read_tokens(path, vocab):
    rows = [[int(v) for v in line.split()] for line in open(path) if line.strip()]
    need(rows, f"{path}: no token sequences")
    need(len({len(r) for r in rows}) == 1, f"{path}: lines have different lengths {sorted({len(r) for r in rows})}")
    t = torch.tensor(rows, dtype=torch.int64)
    need(int(t.min()) >= 0 and int(t.max()) < vocab, f"{path}: token id outside [0, {vocab})")
    return t


def run(ckpt, tokens_path):
    """(cfg, tokens, logits, layers): layers = list of (name, family, index, operator dict, activations)."""
    cfg, Wd = load_checkpoint(ckpt)
    arch = (cfg.get("architectures") or ["?"])[0]
    need(arch in FORWARDS, f"{ckpt}: architecture {arch} not supported ({', '.join(FORWARDS)})")
    W = Weights(Wd, ckpt)
    tokens = read_tokens(tokens_path, cfg["vocab_size"])
    layers = []

    def rec(name, family, index, op, **acts):
        layers.append((name, family, index, op, acts))

    with torch.no_grad():
        logits = FORWARDS[arch](cfg, W, tokens, rec)
    unused = sorted(set(Wd) - W.used)
    need(not unused, f"{ckpt}: tensors not used by the {arch} forward pass: {unused[:8]}")
    return cfg, tokens, logits, layers


def check_layers(layers):
    """max relative |T x - scan output| per layer, T from dense_T (closed form)."""
    worst = 0.0
    for name, family, _, op, acts in layers:
        T = torch.from_numpy(dense_T(family, **{k: v for k, v in op.items()}))  # [B, C, L, L]
        x, y = acts["scan_input"], acts["scan_output"]  # [B, C, L, P]
        err = ((T @ x - y).abs().max() / max(1.0, float(y.abs().max()))).item()
        print(f"check {name} ({family}): max rel |T x - scan output| = {err:.1e}", file=sys.stderr)
        worst = max(worst, err)
    return worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--check", action="store_true", help="verify each operator against the forward's scan")
    ap.add_argument("--activations", action="store_true", help="also store each mixer's inputs and outputs")
    args = ap.parse_args(argv)
    cfg, tokens, logits, layers = run(args.ckpt, args.tokens)
    if args.check and check_layers(layers) > 1e-10:
        print("reference_forward: operator check FAILED", file=sys.stderr)
        return 1
    cmd = " ".join(["reference_forward.py"] + (sys.argv[1:] if argv is None else list(argv)))
    with OperatorFileWriter(args.output, command_line=cmd, seq_len=tokens.shape[1]) as w:
        for name, family, idx, op, acts in layers:
            if family == "mamba":
                w.add_mamba(name, op["dt"], op["A"], op["B"], op["C"], layer_index=idx)
            elif family == "mamba2":
                w.add_mamba2(name, op["dt"], op["A"], op["B"], op["C"], layer_index=idx)
            elif family == "softmax_attention":
                w.add_softmax_attention(name, op["q"], op["k"], scale=op["scale"], window=op["window"],
                                        layer_index=idx)
            elif family == "gla":
                w.add_gla(name, op["q"], op["k"], op["log_decay"], layer_index=idx)
            if args.activations:
                for k, v in acts.items():
                    w.file.create_dataset(f"activations/{name}/{k}", data=v.numpy())
        f = w.file
        f.create_dataset("logits", data=logits.numpy())
        f.create_dataset("tokens", data=tokens.numpy())
        f.attrs["architecture"] = cfg["architectures"][0]
        f.attrs["checkpoint"] = os.path.abspath(args.ckpt)
        f.attrs["tokens_file"] = os.path.abspath(args.tokens)
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
