#!/usr/bin/python3
"""Independent float64 PyTorch forward pass of Hugging Face checkpoints, for testing `ess analyze`.

    reference_forward.py CKPT_DIR --tokens FILE -o EXPECTED.h5 [--check] [--activations]

Architectures (config.json "architectures"[0]): MambaForCausalLM, FalconMambaForCausalLM,
Mamba2ForCausalLM, LlamaForCausalLM, MistralForCausalLM, GLAForCausalLM (flash-linear-attention),
GPT2LMHeadModel, GPTNeoXForCausalLM, PhiForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM,
Gemma2ForCausalLM, Lfm2ForCausalLM, FalconH1ForCausalLM, JambaForCausalLM.
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


def layer_norm(x, w, b, eps):
    """LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * w + b (biased variance)."""
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps) * w
    return y if b is None else y + b


def gelu_tanh(x):
    """transformers' gelu_new / gelu_pytorch_tanh."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


ACTIVATIONS = {"silu": silu, "swish": silu, "gelu": lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))),
               "gelu_new": gelu_tanh, "gelu_pytorch_tanh": gelu_tanh, "relu": F.relu}


def activation(name):
    need(name in ACTIVATIONS, f"activation {name!r} not supported ({', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def softmax_attention(q, k, v, scale, window=0, softcap=0.0):
    """q [B, H, L, d], k, v [B, Hkv, L, d]: (k, v repeated to H heads, o = softmax(s) v [B, H, L, d]),
    s_ij = q_i.k_j * scale (then softcap * tanh(s / softcap) when softcap), causal, i - j < window."""
    H, Hkv, L = q.shape[1], k.shape[1], q.shape[2]
    need(H % Hkv == 0, f"{H} query heads not divisible by {Hkv} key/value heads")
    k = k.repeat_interleave(H // Hkv, dim=1)  # head h uses KV head h // (H / Hkv)
    v = v.repeat_interleave(H // Hkv, dim=1)
    i, j = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    allowed = (j <= i) & ((i - j < window) if window else True)
    s = (q @ k.transpose(-1, -2)) * scale
    if softcap:
        s = torch.tanh(s / softcap) * softcap
    att = torch.softmax(s.masked_fill(~allowed, float("-inf")), -1)
    return k, v, att @ v


def rotary(x, inv_freq):
    """Rotate-half rotary embedding on the first 2 * len(inv_freq) features of x [..., L, d]
    (partial rotary: the rest pass through)."""
    L, r = x.shape[-2], 2 * len(inv_freq)
    ang = torch.arange(L, dtype=torch.float64)[:, None] * inv_freq[None]
    cos, sin = torch.cos(torch.cat([ang, ang], -1)), torch.sin(torch.cat([ang, ang], -1))
    xr, xp = x[..., :r], x[..., r:]
    return torch.cat([xr * cos + rotate_half(xr) * sin, xp], -1)


def default_inv_freq(theta, dims):
    return 1.0 / theta ** (torch.arange(0, dims, 2, dtype=torch.float64) / dims)


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
    """Llama, Mistral and the relatives that share the layout: Qwen2 (q/k/v biases), Qwen3 (per-head
    q/k RMSNorm before the rotary embedding), Gemma-2 (below)."""
    arch = cfg["architectures"][0]
    gemma = arch == "Gemma2ForCausalLM"
    V, D, nl = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    hd = cfg.get("head_dim") or D // H
    I = cfg["intermediate_size"]
    eps = cfg.get("rms_norm_eps", 1e-6)
    need(H % Hkv == 0, f"num_attention_heads {H} not divisible by num_key_value_heads {Hkv}")
    act = activation(cfg.get("hidden_activation") or "gelu_pytorch_tanh") if gemma \
        else activation(cfg.get("hidden_act", "silu"))
    if arch in ("Qwen2ForCausalLM", "Qwen3ForCausalLM"):
        need(not cfg.get("use_sliding_window", False), "use_sliding_window not supported")
    windows = [0] * nl
    if arch == "MistralForCausalLM":
        windows = [int(cfg.get("sliding_window") or 0)] * nl
    elif gemma:
        # Gemma-2: layers 0, 2, 4, … slide (Gemma2DecoderLayer.is_sliding = not layer_idx % 2), or
        # config.layer_types ("sliding_attention" / "full_attention") when present.
        types = cfg.get("layer_types") or ["sliding_attention" if l % 2 == 0 else "full_attention" for l in range(nl)]
        need(len(types) == nl and set(types) <= {"sliding_attention", "full_attention"}, f"bad layer_types {types}")
        windows = [int(cfg.get("sliding_window") or 0) if t == "sliding_attention" else 0 for t in types]
    attn_bias = bool(cfg.get("attention_bias", False))
    qkv_bias, o_bias = (True, False) if arch == "Qwen2ForCausalLM" else (attn_bias, attn_bias)
    mlp_bias = bool(cfg.get("mlp_bias", False))
    qk_norm = arch == "Qwen3ForCausalLM"
    if gemma:  # Gemma2RMSNorm: x / rms(x) * (1 + w)
        norm = lambda x, w: rms(x, 1.0 + w, eps)  # noqa: E731
        scale = float(cfg["query_pre_attn_scalar"]) ** -0.5
        softcap = float(cfg.get("attn_logit_softcapping") or 0.0)
    else:
        norm = lambda x, w: rms(x, w, eps)  # noqa: E731
        scale, softcap = hd ** -0.5, 0.0
    h = W("model.embed_tokens.weight", [V, D])[tokens]
    if gemma:
        h = h * math.sqrt(D)  # Gemma2Model: embeddings times sqrt(hidden_size)
    Bsz, L = tokens.shape
    inv = rope_inv_freq(cfg, hd)
    for l in range(nl):
        p = f"model.layers.{l}."
        a = p + "self_attn."
        res = h
        x = norm(h, W(p + "input_layernorm.weight", [D]))
        bq = lambda n, s: W(n, [s]) if qkv_bias else None  # noqa: E731
        bo = lambda n, s: W(n, [s]) if o_bias else None  # noqa: E731
        q = linear(x, W(a + "q_proj.weight", [H * hd, D]), bq(a + "q_proj.bias", H * hd))
        k = linear(x, W(a + "k_proj.weight", [Hkv * hd, D]), bq(a + "k_proj.bias", Hkv * hd))
        v = linear(x, W(a + "v_proj.weight", [Hkv * hd, D]), bq(a + "v_proj.bias", Hkv * hd))
        q = q.reshape(Bsz, L, H, hd)
        k = k.reshape(Bsz, L, Hkv, hd)
        if qk_norm:  # Qwen3Attention: q_norm / k_norm over head_dim, before RoPE
            q = rms(q, W(a + "q_norm.weight", [hd]), eps)
            k = rms(k, W(a + "k_norm.weight", [hd]), eps)
        q, k = rotary(q.transpose(1, 2), inv), rotary(k.transpose(1, 2), inv)
        v = v.reshape(Bsz, L, Hkv, hd).transpose(1, 2)
        k, v, o = softmax_attention(q, k, v, scale, windows[l], softcap)  # o [B, H, L, hd]
        out = linear(o.transpose(1, 2).reshape(Bsz, L, H * hd), W(a + "o_proj.weight", [D, H * hd]),
                     bo(a + "o_proj.bias", D))
        if gemma:
            out = norm(out, W(p + "post_attention_layernorm.weight", [D]))
        h = res + out
        rec(f"model.layers.{l}.self_attn", "softmax_attention", l,
            dict(q=q, k=k, scale=scale, window=windows[l], softcap=softcap),
            mixer_input=x, scan_input=v, scan_output=o, mixer_output=out)
        res = h
        x = norm(h, W(p + ("pre_feedforward_layernorm.weight" if gemma else "post_attention_layernorm.weight"), [D]))
        mb = lambda n, s: W(n, [s]) if mlp_bias else None  # noqa: E731
        m = act(linear(x, W(p + "mlp.gate_proj.weight", [I, D]), mb(p + "mlp.gate_proj.bias", I))) \
            * linear(x, W(p + "mlp.up_proj.weight", [I, D]), mb(p + "mlp.up_proj.bias", I))
        m = linear(m, W(p + "mlp.down_proj.weight", [D, I]), mb(p + "mlp.down_proj.bias", D))
        if gemma:
            m = norm(m, W(p + "post_feedforward_layernorm.weight", [D]))
        h = res + m
    h = norm(h, W("model.norm.weight", [D]))
    logits = lm_head(W, cfg, h, "model.embed_tokens.weight", V, D)
    cap = float(cfg.get("final_logit_softcapping") or 0.0) if gemma else 0.0
    return torch.tanh(logits / cap) * cap if cap else logits


# ---------------------------------------------------------------------------------------------
# GPT-2


def gpt2_forward(cfg, W, tokens, rec):
    V, D, nl, H, P = cfg["vocab_size"], cfg["n_embd"], cfg["n_layer"], cfg["n_head"], cfg["n_positions"]
    I = cfg.get("n_inner") or 4 * D
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    hd = D // H
    need(not cfg.get("scale_attn_by_inverse_layer_idx", False), "scale_attn_by_inverse_layer_idx not supported")
    need(not cfg.get("add_cross_attention", False), "add_cross_attention not supported")
    act = activation(cfg.get("activation_function", "gelu_new"))
    pre = "transformer." if "transformer.wte.weight" in W.W else ""  # GPT2Model checkpoints lack the prefix
    Bsz, L = tokens.shape
    need(L <= P, f"sequence length {L} exceeds n_positions {P}")
    h = W(pre + "wte.weight", [V, D])[tokens] + W(pre + "wpe.weight", [P, D])[:L]  # learned positions
    scale = hd ** -0.5 if cfg.get("scale_attn_weights", True) else 1.0
    heads = lambda t: t.reshape(Bsz, L, H, hd).transpose(1, 2)  # noqa: E731
    for l in range(nl):
        p = f"{pre}h.{l}."
        x = layer_norm(h, W(p + "ln_1.weight", [D]), W(p + "ln_1.bias", [D]), eps)
        qkv = x @ W(p + "attn.c_attn.weight", [D, 3 * D]) + W(p + "attn.c_attn.bias", [3 * D])  # Conv1D: x W + b
        q, k, v = (heads(t) for t in qkv.split(D, -1))
        k, v, o = softmax_attention(q, k, v, scale)
        out = o.transpose(1, 2).reshape(Bsz, L, D) @ W(p + "attn.c_proj.weight", [D, D]) \
            + W(p + "attn.c_proj.bias", [D])
        h = h + out
        rec(f"transformer.h.{l}.attn", "softmax_attention", l, dict(q=q, k=k, scale=scale, window=0),
            mixer_input=x, scan_input=v, scan_output=o, mixer_output=out)
        x = layer_norm(h, W(p + "ln_2.weight", [D]), W(p + "ln_2.bias", [D]), eps)
        m = act(x @ W(p + "mlp.c_fc.weight", [D, I]) + W(p + "mlp.c_fc.bias", [I]))
        h = h + m @ W(p + "mlp.c_proj.weight", [I, D]) + W(p + "mlp.c_proj.bias", [D])
    h = layer_norm(h, W(pre + "ln_f.weight", [D]), W(pre + "ln_f.bias", [D]), eps)
    return lm_head(W, cfg, h, pre + "wte.weight", V, D)


# ---------------------------------------------------------------------------------------------
# GPT-NeoX (Pythia)


def partial_rotary(cfg, hd, pct_keys, theta_keys, default_pct):
    """(inv_freq of the rotated dims) from the first present key of each list, or rope_parameters,
    or the config class's default fraction."""
    rp = cfg.get("rope_parameters") if isinstance(cfg.get("rope_parameters"), dict) else {}
    need(not cfg.get("rope_scaling") and rp.get("rope_type", "default") == "default",
         "rope scaling not supported for this architecture")
    pct = next((cfg[k] for k in pct_keys if cfg.get(k) is not None), rp.get("partial_rotary_factor", default_pct))
    theta = next((cfg[k] for k in theta_keys if cfg.get(k) is not None), rp.get("rope_theta", 10000.0))
    rot = int(hd * float(pct))
    need(rot % 2 == 0, f"{rot} rotary dims (head_dim {hd} x {pct}) is odd")
    return default_inv_freq(float(theta), rot)


def gpt_neox_forward(cfg, W, tokens, rec):
    V, D, nl, H = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    I = cfg["intermediate_size"]
    hd = D // H
    eps = cfg.get("layer_norm_eps", 1e-5)
    act = activation(cfg.get("hidden_act", "gelu"))
    parallel = cfg.get("use_parallel_residual", True)
    bias = cfg.get("attention_bias", True)
    inv = partial_rotary(cfg, hd, ["rotary_pct", "partial_rotary_factor"], ["rotary_emb_base", "rope_theta"], 0.25)
    h = W("gpt_neox.embed_in.weight", [V, D])[tokens]
    Bsz, L = tokens.shape
    for l in range(nl):
        p = f"gpt_neox.layers.{l}."
        ln = lambda x, n: layer_norm(x, W(p + n + ".weight", [D]), W(p + n + ".bias", [D]), eps)  # noqa: E731
        x = ln(h, "input_layernorm")
        qkv = linear(x, W(p + "attention.query_key_value.weight", [3 * D, D]),
                     W(p + "attention.query_key_value.bias", [3 * D]) if bias else None)
        qkv = qkv.reshape(Bsz, L, H, 3 * hd).transpose(1, 2)  # per head: [q | k | v]
        q, k, v = qkv[..., :hd], qkv[..., hd:2 * hd], qkv[..., 2 * hd:]
        q, k = rotary(q, inv), rotary(k, inv)
        k, v, o = softmax_attention(q, k, v, hd ** -0.5)
        out = linear(o.transpose(1, 2).reshape(Bsz, L, D), W(p + "attention.dense.weight", [D, D]),
                     W(p + "attention.dense.bias", [D]) if bias else None)
        rec(f"gpt_neox.layers.{l}.attention", "softmax_attention", l, dict(q=q, k=k, scale=hd ** -0.5, window=0),
            mixer_input=x, scan_input=v, scan_output=o, mixer_output=out)
        mlp = lambda x: linear(act(linear(x, W(p + "mlp.dense_h_to_4h.weight", [I, D]),  # noqa: E731
                                          W(p + "mlp.dense_h_to_4h.bias", [I]))),
                               W(p + "mlp.dense_4h_to_h.weight", [D, I]), W(p + "mlp.dense_4h_to_h.bias", [D]))
        if parallel:  # x + attn(ln1(x)) + mlp(ln2(x))
            h = h + out + mlp(ln(h, "post_attention_layernorm"))
        else:  # x + attn(ln1(x)), then + mlp(ln2(·))
            h = h + out
            h = h + mlp(ln(h, "post_attention_layernorm"))
    h = layer_norm(h, W("gpt_neox.final_layer_norm.weight", [D]), W("gpt_neox.final_layer_norm.bias", [D]), eps)
    head = W.get("embed_out.weight", [V, D])
    if head is None:
        need(cfg.get("tie_word_embeddings", False), "no embed_out.weight and tie_word_embeddings is false")
        head = W("gpt_neox.embed_in.weight")
    return h @ head.T


# ---------------------------------------------------------------------------------------------
# Phi (Phi-1, Phi-1.5, Phi-2)


def phi_forward(cfg, W, tokens, rec):
    V, D, nl, H = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    I = cfg["intermediate_size"]
    hd = D // H
    eps = cfg.get("layer_norm_eps", 1e-5)
    act = activation(cfg.get("hidden_act", "gelu_new"))
    need(not cfg.get("qk_layernorm", False), "qk_layernorm not supported")
    inv = partial_rotary(cfg, hd, ["partial_rotary_factor"], ["rope_theta"], 0.5)
    h = W("model.embed_tokens.weight", [V, D])[tokens]
    Bsz, L = tokens.shape
    for l in range(nl):
        p = f"model.layers.{l}."
        a = p + "self_attn."
        x = layer_norm(h, W(p + "input_layernorm.weight", [D]), W(p + "input_layernorm.bias", [D]), eps)
        proj = lambda n, o: linear(x, W(a + n + ".weight", [o, D]), W(a + n + ".bias", [o]))  # noqa: E731
        q = proj("q_proj", H * hd).reshape(Bsz, L, H, hd).transpose(1, 2)
        k = proj("k_proj", Hkv * hd).reshape(Bsz, L, Hkv, hd).transpose(1, 2)
        v = proj("v_proj", Hkv * hd).reshape(Bsz, L, Hkv, hd).transpose(1, 2)
        q, k = rotary(q, inv), rotary(k, inv)
        k, v, o = softmax_attention(q, k, v, hd ** -0.5)
        out = linear(o.transpose(1, 2).reshape(Bsz, L, H * hd), W(a + "dense.weight", [D, H * hd]),
                     W(a + "dense.bias", [D]))
        rec(f"model.layers.{l}.self_attn", "softmax_attention", l, dict(q=q, k=k, scale=hd ** -0.5, window=0),
            mixer_input=x, scan_input=v, scan_output=o, mixer_output=out)
        m = linear(act(linear(x, W(p + "mlp.fc1.weight", [I, D]), W(p + "mlp.fc1.bias", [I]))),
                   W(p + "mlp.fc2.weight", [D, I]), W(p + "mlp.fc2.bias", [D]))
        h = h + out + m  # attention and MLP in parallel on the same LayerNorm output
    h = layer_norm(h, W("model.final_layernorm.weight", [D]), W("model.final_layernorm.bias", [D]), eps)
    return lm_head(W, cfg, h, "model.embed_tokens.weight", V, D) + W("lm_head.bias", [V])


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


# ---------------------------------------------------------------------------------------------
# LFM2 (Liquid AI): gated short convolutions and GQA attention with q/k norms


def lfm2_layer_types(cfg):
    """Per layer "conv" or "full_attention": config.layer_types, else full_attn_idxs (default: every
    layer attention), as Lfm2Config."""
    nl = cfg["num_hidden_layers"]
    types = cfg.get("layer_types")
    if types is None:
        idxs = cfg.get("full_attn_idxs")
        idxs = list(range(nl)) if idxs is None else idxs
        types = ["full_attention" if i in idxs else "conv" for i in range(nl)]
    need(len(types) == nl and set(types) <= {"conv", "full_attention"}, f"bad layer_types {types}")
    return types


def lfm2_ff_dim(cfg):
    """Lfm2MLP's width: intermediate_size (block_ff_dim wins), with block_auto_adjust_ff_dim
    int(2 I / 3), then int(block_ffn_dim_multiplier * I) rounded up to block_multiple_of."""
    I = cfg.get("block_ff_dim", cfg.get("intermediate_size", 12288))
    if cfg.get("block_auto_adjust_ff_dim", True):
        I = int(2 * I / 3)
        mult = cfg.get("block_ffn_dim_multiplier", 1.0)
        if mult is not None:
            I = int(mult * I)
            m = cfg.get("block_multiple_of", 256)
            I = m * ((I + m - 1) // m)
    return I


def lfm2_forward(cfg, W, tokens, rec):
    V, D, nl = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]
    H = cfg.get("num_attention_heads", 32)
    Hkv = cfg.get("num_key_value_heads", 8)
    hd = cfg.get("head_dim") or D // H
    eps = cfg.get("norm_eps", 1e-5)
    K = cfg.get("conv_L_cache", 3)
    bias = bool(cfg.get("conv_bias", False))
    I = lfm2_ff_dim(cfg)
    types = lfm2_layer_types(cfg)
    rcfg = dict(cfg)
    if isinstance(cfg.get("rope_parameters"), dict) and "full_attention" in cfg["rope_parameters"]:
        rcfg["rope_parameters"] = cfg["rope_parameters"]["full_attention"]
    if rcfg.get("rope_parameters") is None and "rope_theta" not in rcfg:
        rcfg["rope_theta"] = cfg.get("theta", 1000000.0)  # Lfm2Config's default theta
    inv = rope_inv_freq(rcfg, hd)
    h = W("model.embed_tokens.weight", [V, D])[tokens]
    Bsz, L = tokens.shape
    for l in range(nl):
        p = f"model.layers.{l}."
        x = rms(h, W(p + "operator_norm.weight", [D]), eps)
        if types[l] == "full_attention":
            a = p + "self_attn."
            q = (x @ W(a + "q_proj.weight", [H * hd, D]).T).reshape(Bsz, L, H, hd)
            k = (x @ W(a + "k_proj.weight", [Hkv * hd, D]).T).reshape(Bsz, L, Hkv, hd)
            v = (x @ W(a + "v_proj.weight", [Hkv * hd, D]).T).reshape(Bsz, L, Hkv, hd).transpose(1, 2)
            q = rms(q, W(a + "q_layernorm.weight", [hd]), eps).transpose(1, 2)  # per head, before RoPE
            k = rms(k, W(a + "k_layernorm.weight", [hd]), eps).transpose(1, 2)
            q, k = rotary(q, inv), rotary(k, inv)
            k, v, o = softmax_attention(q, k, v, hd ** -0.5)
            out = o.transpose(1, 2).reshape(Bsz, L, H * hd) @ W(a + "out_proj.weight", [D, H * hd]).T
            rec(f"model.layers.{l}.self_attn", "softmax_attention", l, dict(q=q, k=k, scale=hd ** -0.5, window=0),
                mixer_input=x, scan_input=v, scan_output=o, mixer_output=out)
        else:
            c = p + "conv."
            BCx = linear(x, W(c + "in_proj.weight", [3 * D, D]), W(c + "in_proj.bias", [3 * D]) if bias else None)
            Bg, Cg, xs = BCx[..., :D], BCx[..., D:2 * D], BCx[..., 2 * D:]  # chunk(3) of the channels: B, C, x
            w = W(c + "conv.weight", [D, 1, K])
            conv = causal_depthwise_conv(Bg * xs, w, None)  # Conv1d(groups=D, padding=K-1)[..., :L]
            scan = Cg * conv  # = T x: T = diag(C) Toeplitz(h) diag(B) per channel
            y = scan + (Cg * W(c + "conv.bias", [D]) if bias else 0.0)  # the conv bias, gated: outside T
            out = linear(y, W(c + "out_proj.weight", [D, D]), W(c + "out_proj.bias", [D]) if bias else None)
            rec(f"model.layers.{l}.conv", "conv", l,
                dict(h=w[:, 0, :].flip(-1), pre_gate=Bg.transpose(1, 2), post_gate=Cg.transpose(1, 2)),
                mixer_input=x, scan_input=xs.transpose(1, 2)[..., None], scan_output=scan.transpose(1, 2)[..., None],
                mixer_output=out)
        h = h + out
        u = rms(h, W(p + "ffn_norm.weight", [D]), eps)
        f = "feed_forward."
        m = silu(u @ W(p + f + "w1.weight", [I, D]).T) * (u @ W(p + f + "w3.weight", [I, D]).T)
        h = h + m @ W(p + f + "w2.weight", [D, I]).T
    h = rms(h, W("model.embedding_norm.weight", [D]), eps)  # the final norm (named embedding_norm upstream)
    cfg = dict(cfg, tie_word_embeddings=cfg.get("tie_embedding", cfg.get("tie_word_embeddings", True)))
    return lm_head(W, cfg, h, "model.embed_tokens.weight", V, D)


# ---------------------------------------------------------------------------------------------
# Falcon-H1 (TII): Mamba2 and attention side by side in every layer, with muP multipliers


def falcon_h1_forward(cfg, W, tokens, rec):
    V, D, nl = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads", 8) or H
    hd = cfg.get("head_dim") or D // H
    I = cfg["intermediate_size"]
    eps = cfg.get("rms_norm_eps", 1e-5)
    act = activation(cfg.get("hidden_act", "silu"))
    attn_bias, mlp_bias = bool(cfg.get("attention_bias", False)), bool(cfg.get("mlp_bias", False))
    need(H % Hkv == 0, "num_attention_heads not divisible by num_key_value_heads")
    need(cfg.get("rope_theta") is not None or isinstance(cfg.get("rope_parameters"), dict), "no rope_theta")
    inv = rope_inv_freq(cfg, hd)
    # Mamba2 mixer
    E = cfg.get("mamba_d_ssm", 1024)
    E = int(cfg.get("mamba_expand", 2) * D) if E is None else E
    Hm, G, N, K = cfg.get("mamba_n_heads", 128), cfg.get("mamba_n_groups", 1), cfg.get("mamba_d_state", 256), \
        cfg.get("mamba_d_conv", 4)
    P = cfg.get("mamba_d_head", "auto")
    P = E // Hm if P == "auto" else P
    need(P * Hm == E and Hm % G == 0 and E % G == 0, "mamba head / group sizes do not divide mamba_d_ssm")
    lo, hi = cfg.get("time_step_limit", [0.0, float("inf")])
    rms_gate, before = cfg.get("mamba_rms_norm", False), cfg.get("mamba_norm_before_gate", True)
    conv_dim = E + 2 * G * N
    m = lambda k: float(cfg.get(k, 1.0))  # noqa: E731
    gate_mult, down_mult = cfg.get("mlp_multipliers") or [1.0, 1.0]
    mz, mx, mb, mc, mdt = cfg.get("ssm_multipliers") or [1.0] * 5
    mup = torch.cat([torch.full((E,), float(mz)), torch.full((E,), float(mx)), torch.full((G * N,), float(mb)),
                     torch.full((G * N,), float(mc)), torch.full((Hm,), float(mdt))])
    h = W("model.embed_tokens.weight", [V, D])[tokens] * m("embedding_multiplier")
    Bsz, L = tokens.shape
    grp = torch.arange(Hm) // (Hm // G)
    for l in range(nl):
        p = f"model.layers.{l}."
        x = rms(h, W(p + "input_layernorm.weight", [D]), eps)
        # Mamba2 branch (FalconH1Mixer.torch_forward)
        mp = p + "mamba."
        pw = E + conv_dim + Hm
        proj = linear(x * m("ssm_in_multiplier"), W(mp + "in_proj.weight", [pw, D]),
                      W(mp + "in_proj.bias", [pw]) if cfg.get("mamba_proj_bias", False) else None) * mup
        z, xBC, dt = proj[..., :E], proj[..., E:E + conv_dim], proj[..., E + conv_dim:]
        xBC = act(causal_depthwise_conv(xBC, W(mp + "conv1d.weight", [conv_dim, 1, K]),
                                        W(mp + "conv1d.bias", [conv_dim]) if cfg.get("mamba_conv_bias", True) else None))
        xs, Bm, Cm = xBC[..., :E], xBC[..., E:E + G * N], xBC[..., E + G * N:]
        dt = torch.clamp(F.softplus(dt + W(mp + "dt_bias", [Hm])), lo, hi)  # [B, L, Hm]
        A = -torch.exp(W(mp + "A_log", [Hm]))
        xh = xs.reshape(Bsz, L, Hm, P)
        Bg, Cg = Bm.reshape(Bsz, L, G, N), Cm.reshape(Bsz, L, G, N)
        S = torch.zeros(Bsz, Hm, P, N)
        ys = []
        for t in range(L):
            Bt, Ct = Bg[:, t, grp], Cg[:, t, grp]
            S = torch.exp(dt[:, t, :, None, None] * A[:, None, None]) * S \
                + dt[:, t, :, None, None] * xh[:, t, :, :, None] * Bt[:, :, None, :]
            ys.append((S * Ct[:, :, None, :]).sum(-1))
        scan = torch.stack(ys, 1)  # [B, L, Hm, P]
        y = (scan + xh * W(mp + "D", [Hm])[:, None]).reshape(Bsz, L, E)
        if rms_gate:  # FalconH1RMSNormGated: per group of E/G, gate before or after the norm
            nw = W(mp + "norm.weight", [E])
            if not before:
                y = y * silu(z)
            y = (rms(y.reshape(Bsz, L, G, E // G), None, eps) * nw.reshape(G, E // G)).reshape(Bsz, L, E)
            if before:
                y = y * silu(z)
        else:
            y = y * silu(z)
        ssm_out = linear(y, W(mp + "out_proj.weight", [D, E]),
                         W(mp + "out_proj.bias", [D]) if cfg.get("projectors_bias", False) else None) \
            * m("ssm_out_multiplier")
        rec(f"model.layers.{l}.mamba", "mamba2", l,
            dict(dt=dt.transpose(1, 2), A=A, B=Bg.permute(0, 2, 1, 3), C=Cg.permute(0, 2, 1, 3)),
            mixer_input=x, scan_input=xh.permute(0, 2, 1, 3), scan_output=scan.permute(0, 2, 1, 3),
            mixer_output=ssm_out)
        # attention branch (Llama attention, keys times key_multiplier before RoPE)
        a = p + "self_attn."
        xa = x * m("attention_in_multiplier")
        b = lambda n, o: W(a + n + ".bias", [o]) if attn_bias else None  # noqa: E731
        q = linear(xa, W(a + "q_proj.weight", [H * hd, D]), b("q_proj", H * hd)).reshape(Bsz, L, H, hd).transpose(1, 2)
        k = linear(xa, W(a + "k_proj.weight", [Hkv * hd, D]), b("k_proj", Hkv * hd)).reshape(Bsz, L, Hkv, hd) \
            .transpose(1, 2) * m("key_multiplier")
        v = linear(xa, W(a + "v_proj.weight", [Hkv * hd, D]), b("v_proj", Hkv * hd)).reshape(Bsz, L, Hkv, hd) \
            .transpose(1, 2)
        q, k = rotary(q, inv), rotary(k, inv)
        k, v, o = softmax_attention(q, k, v, hd ** -0.5)
        attn_out = linear(o.transpose(1, 2).reshape(Bsz, L, H * hd), W(a + "o_proj.weight", [D, H * hd]),
                          b("o_proj", D)) * m("attention_out_multiplier")
        rec(f"model.layers.{l}.self_attn", "softmax_attention", l, dict(q=q, k=k, scale=hd ** -0.5, window=0),
            mixer_input=xa, scan_input=v, scan_output=o, mixer_output=attn_out)
        h = h + ssm_out + attn_out
        u = rms(h, W(p + "pre_ff_layernorm.weight", [D]), eps)
        f = p + "feed_forward."
        mb_ = lambda n, o: W(f + n + ".bias", [o]) if mlp_bias else None  # noqa: E731
        g = act(linear(u, W(f + "gate_proj.weight", [I, D]), mb_("gate_proj", I)) * float(gate_mult))
        y = linear(u, W(f + "up_proj.weight", [I, D]), mb_("up_proj", I)) * g
        h = h + linear(y, W(f + "down_proj.weight", [D, I]), mb_("down_proj", D)) * float(down_mult)
    h = rms(h, W("model.final_layernorm.weight", [D]), eps)
    cfg = dict(cfg, tie_word_embeddings=cfg.get("tie_word_embeddings", False))
    return lm_head(W, cfg, h, "model.embed_tokens.weight", V, D) * m("lm_head_multiplier")


# ---------------------------------------------------------------------------------------------
# Jamba (AI21): Mamba (with inner RMSNorms) and attention layers, MoE MLPs with top-k routing


def jamba_layout(cfg):
    """(block type, experts) per layer as JambaConfig.layers_block_type / layers_num_experts."""
    nl = cfg["num_hidden_layers"]
    ap, ao = cfg.get("attn_layer_period", 8), cfg.get("attn_layer_offset", 4)
    ep, eo = cfg.get("expert_layer_period", 2), cfg.get("expert_layer_offset", 1)
    need(ao < ap and eo < ep, "layer offset must be smaller than its period")
    ne = cfg.get("num_experts", 16)
    return (["attention" if i % ap == ao else "mamba" for i in range(nl)],
            [ne if i % ep == eo else 1 for i in range(nl)])


def jamba_forward(cfg, W, tokens, rec):
    V, D, nl = cfg["vocab_size"], cfg["hidden_size"], cfg["num_hidden_layers"]
    H = cfg.get("num_attention_heads", 32)
    Hkv = cfg.get("num_key_value_heads", 8) or H
    hd = cfg.get("head_dim") or D // H
    I = cfg.get("intermediate_size", 14336)
    eps = cfg.get("rms_norm_eps", 1e-6)
    act = activation(cfg.get("hidden_act", "silu"))
    need(cfg.get("sliding_window") is None, "sliding_window not supported")
    N, K = cfg.get("mamba_d_state", 16), cfg.get("mamba_d_conv", 4)
    E = cfg.get("mamba_expand", 2) * D
    R = cfg.get("mamba_dt_rank", "auto")
    R = math.ceil(D / 16) if R == "auto" else R
    conv_bias, proj_bias = cfg.get("mamba_conv_bias", True), cfg.get("mamba_proj_bias", False)
    topk = cfg.get("num_experts_per_tok", 2)
    types, experts = jamba_layout(cfg)
    h = W("model.embed_tokens.weight", [V, D])[tokens]
    Bsz, L = tokens.shape
    for l in range(nl):
        p = f"model.layers.{l}."
        x = rms(h, W(p + "input_layernorm.weight", [D]), eps)
        if types[l] == "mamba":
            mp = p + "mamba."
            proj = linear(x, W(mp + "in_proj.weight", [2 * E, D]), W(mp + "in_proj.bias", [2 * E]) if proj_bias else None)
            xs, z = proj[..., :E], proj[..., E:]
            xs = act(causal_depthwise_conv(xs, W(mp + "conv1d.weight", [E, 1, K]),
                                           W(mp + "conv1d.bias", [E]) if conv_bias else None))
            xdbl = xs @ W(mp + "x_proj.weight", [R + 2 * N, E]).T
            dtr, Bm, Cm = xdbl[..., :R], xdbl[..., R:R + N], xdbl[..., R + N:]
            dtr = rms(dtr, W(mp + "dt_layernorm.weight", [R]), eps)  # Jamba's inner RMSNorms (with weights)
            Bm = rms(Bm, W(mp + "b_layernorm.weight", [N]), eps)
            Cm = rms(Cm, W(mp + "c_layernorm.weight", [N]), eps)
            dt = F.softplus(linear(dtr, W(mp + "dt_proj.weight", [E, R]), W(mp + "dt_proj.bias", [E])))
            A = -torch.exp(W(mp + "A_log", [E, N]))
            st = torch.zeros(Bsz, E, N)
            ys = []
            for t in range(L):
                st = torch.exp(dt[:, t, :, None] * A) * st + dt[:, t, :, None] * Bm[:, t, None, :] * xs[:, t, :, None]
                ys.append((st * Cm[:, t, None, :]).sum(-1))
            scan = torch.stack(ys, 1)
            y = (scan + xs * W(mp + "D", [E])) * act(z)
            out = linear(y, W(mp + "out_proj.weight", [D, E]), W(mp + "out_proj.bias", [D]) if proj_bias else None)
            rec(f"model.layers.{l}.mamba", "mamba", l, dict(dt=dt.transpose(1, 2), A=A, B=Bm, C=Cm),
                mixer_input=x, scan_input=xs.transpose(1, 2)[..., None], scan_output=scan.transpose(1, 2)[..., None],
                mixer_output=out)
        else:
            a = p + "self_attn."
            q = (x @ W(a + "q_proj.weight", [H * hd, D]).T).reshape(Bsz, L, H, hd).transpose(1, 2)
            k = (x @ W(a + "k_proj.weight", [Hkv * hd, D]).T).reshape(Bsz, L, Hkv, hd).transpose(1, 2)
            v = (x @ W(a + "v_proj.weight", [Hkv * hd, D]).T).reshape(Bsz, L, Hkv, hd).transpose(1, 2)
            k, v, o = softmax_attention(q, k, v, hd ** -0.5)  # no positional encoding in Jamba's attention
            out = o.transpose(1, 2).reshape(Bsz, L, H * hd) @ W(a + "o_proj.weight", [D, H * hd]).T
            rec(f"model.layers.{l}.self_attn", "softmax_attention", l, dict(q=q, k=k, scale=hd ** -0.5, window=0),
                mixer_input=x, scan_input=v, scan_output=o, mixer_output=out)
        h = h + out
        u = rms(h, W(p + "pre_ff_layernorm.weight", [D]), eps)
        f = p + "feed_forward."
        mlp = lambda u, e: linear(act(u @ W(e + "gate_proj.weight", [I, D]).T) * (u @ W(e + "up_proj.weight", [I, D]).T),  # noqa: E731,E501
                                  W(e + "down_proj.weight", [D, I]))
        if experts[l] > 1:  # softmax over the experts, the top-k probabilities (not renormalized) weight their MLPs
            probs = torch.softmax(u @ W(f + "router.weight", [experts[l], D]).T, -1)
            w, idx = torch.topk(probs, topk, dim=-1)
            m = torch.zeros_like(u)
            for e in range(experts[l]):
                weight = (w * (idx == e)).sum(-1, keepdim=True)  # 0 where expert e is not chosen
                m = m + weight * mlp(u, f + f"experts.{e}.")
            h = h + m
        else:
            h = h + mlp(u, f)
    h = rms(h, W("model.final_layernorm.weight", [D]), eps)
    cfg = dict(cfg, tie_word_embeddings=cfg.get("tie_word_embeddings", False))
    return lm_head(W, cfg, h, "model.embed_tokens.weight", V, D)


FORWARDS = {"MambaForCausalLM": mamba_forward, "FalconMambaForCausalLM": mamba_forward,
            "Mamba2ForCausalLM": mamba2_forward, "LlamaForCausalLM": llama_forward,
            "MistralForCausalLM": llama_forward, "GLAForCausalLM": gla_forward,
            "GPT2LMHeadModel": gpt2_forward, "GPTNeoXForCausalLM": gpt_neox_forward, "PhiForCausalLM": phi_forward,
            "Qwen2ForCausalLM": llama_forward, "Qwen3ForCausalLM": llama_forward,
            "Gemma2ForCausalLM": llama_forward, "Lfm2ForCausalLM": lfm2_forward,
            "FalconH1ForCausalLM": falcon_h1_forward, "JambaForCausalLM": jamba_forward}


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
        worst = max(worst, err if err == err else float("inf"))  # NaN: a failure, not dropped by max
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
    if args.check and not check_layers(layers) <= 1e-10:
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
                                        layer_index=idx, softcap=op.get("softcap"))
            elif family == "gla":
                w.add_gla(name, op["q"], op["k"], op["log_decay"], layer_index=idx)
            elif family == "conv":
                w.add_conv(name, op["h"], pre_gate=op["pre_gate"], post_gate=op["post_gate"], layer_index=idx)
            else:
                raise ValueError(f"reference_forward: no operator writer for family {family!r} (layer {name})")
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
