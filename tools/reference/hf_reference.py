#!/usr/bin/python3
"""Independent PyTorch (float64) reference for `ess analyze`.

make:     hf_reference.py make OUTDIR --arch mamba|falcon_mamba|mamba2|llama|mistral|gla [--seed S]
                 [--dtype F32|F16|BF16] [--sharded] [--size tiny|mamba130m] [--original-keys] [--untied]
          writes a random checkpoint in the upstream Hugging Face layout (config.json +
          model.safetensors or shards + index) — safetensors written by hand, no extra packages.
forward:  hf_reference.py forward CKPT --tokens FILE -o EXPECTED.h5
          runs the upstream forward pass written out here from the Hugging Face transformers
          semantics (see README.md) and writes `logits` [B, L, V] plus every mixer's operator as an
          ess operator file (format "ess-operators"), so `ess compute EXPECTED.h5` / ess_reference.py
          give the expected ESS.
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from ess_writer import OperatorFileWriter  # noqa: E402

torch.set_default_dtype(torch.float64)

# ---------------------------------------------------------------------------------------------
# safetensors, by hand


def write_safetensors(path, tensors, dtype="F32"):
    np_dtype = {"F32": np.float32, "F64": np.float64, "F16": np.float16}.get(dtype)
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float64)
        if dtype == "BF16":  # round to nearest even on the upper 16 bits of float32
            u = a.astype(np.float32).view(np.uint32).astype(np.uint64)
            u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
            raw = u.tobytes()
        else:
            raw = a.astype(np_dtype).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        buf = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, t = e["data_offsets"]
        raw = buf[b:t]
        if e["dtype"] == "BF16":
            a = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, {"F32": np.float32, "F64": np.float64, "F16": np.float16}[e["dtype"]])
        out[name] = torch.tensor(a.astype(np.float64).reshape(e["shape"]))
    return out


def load_checkpoint(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        out = {}
        for shard in sorted(set(wm.values())):
            out.update(read_safetensors(os.path.join(d, shard)))
        return out
    return read_safetensors(os.path.join(d, "model.safetensors"))


# ---------------------------------------------------------------------------------------------
# random checkpoints


def make(args):
    rng = np.random.default_rng(args.seed)
    t = {}

    def w(name, *shape, scale=None):
        fan_in = shape[-1] if len(shape) > 1 else 1
        s = scale if scale is not None else 1.0 / math.sqrt(fan_in)
        t[name] = rng.standard_normal(shape) * s

    arch = args.arch
    big = args.size == "mamba130m"
    V = 50280 if big else 96
    if arch in ("mamba", "falcon_mamba"):
        D, N, K, nl = (768, 16, 4, 24) if big else (32, 8, 4, 2)
        E = 2 * D
        R = math.ceil(D / 16)
        cfg = {"architectures": ["FalconMambaForCausalLM" if arch == "falcon_mamba" else "MambaForCausalLM"],
               "model_type": arch, "vocab_size": V, "hidden_size": D, "state_size": N, "num_hidden_layers": nl,
               "layer_norm_epsilon": 1e-5, "expand": 2, "conv_kernel": K, "use_bias": False, "use_conv_bias": True,
               "time_step_rank": "auto", "intermediate_size": E, "residual_in_fp32": True,
               "tie_word_embeddings": not args.untied}
        if arch == "falcon_mamba":
            cfg["mixer_rms_eps"] = 1e-6
        emb = "backbone.embedding.weight" if args.original_keys else "backbone.embeddings.weight"
        w(emb, V, D, scale=1.0)
        for l in range(nl):
            p = f"backbone.layers.{l}."
            t[p + "norm.weight"] = 1 + 0.1 * rng.standard_normal(D)
            w(p + "mixer.in_proj.weight", 2 * E, D)
            w(p + "mixer.conv1d.weight", E, 1, K, scale=0.5)
            w(p + "mixer.conv1d.bias", E, scale=0.1)
            w(p + "mixer.x_proj.weight", R + 2 * N, E)
            w(p + "mixer.dt_proj.weight", E, R, scale=R ** -0.5)
            dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), E))
            t[p + "mixer.dt_proj.bias"] = dt + np.log(-np.expm1(-dt))  # inverse softplus
            t[p + "mixer.A_log"] = np.log(np.tile(np.arange(1, N + 1, dtype=float), (E, 1)))
            t[p + "mixer.D"] = np.ones(E)
            w(p + "mixer.out_proj.weight", D, E)
        t["backbone.norm_f.weight"] = 1 + 0.1 * rng.standard_normal(D)
        if args.untied:
            w("lm_head.weight", V, D)
    elif arch == "mamba2":
        D, N, K, nl, P, G = (64, 8, 4, 2, 16, 2) if not big else (768, 128, 4, 24, 64, 1)
        E = 2 * D
        H = E // P
        cfg = {"architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "vocab_size": V, "hidden_size": D,
               "state_size": N, "num_hidden_layers": nl, "layer_norm_epsilon": 1e-5, "expand": 2, "conv_kernel": K,
               "n_groups": G, "num_heads": H, "head_dim": P, "use_bias": False, "use_conv_bias": True,
               "time_step_limit": [0.0, float("inf")], "rms_norm": True, "chunk_size": 256,
               "tie_word_embeddings": not args.untied}
        conv_dim = E + 2 * G * N
        w("backbone.embeddings.weight", V, D, scale=1.0)
        for l in range(nl):
            p = f"backbone.layers.{l}."
            t[p + "norm.weight"] = 1 + 0.1 * rng.standard_normal(D)
            w(p + "mixer.in_proj.weight", E + conv_dim + H, D)
            w(p + "mixer.conv1d.weight", conv_dim, 1, K, scale=0.5)
            w(p + "mixer.conv1d.bias", conv_dim, scale=0.1)
            dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), H))
            t[p + "mixer.dt_bias"] = dt + np.log(-np.expm1(-dt))
            t[p + "mixer.A_log"] = np.log(rng.uniform(1, 16, H))
            t[p + "mixer.D"] = np.ones(H)
            t[p + "mixer.norm.weight"] = 1 + 0.1 * rng.standard_normal(E)
            w(p + "mixer.out_proj.weight", D, E)
        t["backbone.norm_f.weight"] = 1 + 0.1 * rng.standard_normal(D)
        if args.untied:
            w("lm_head.weight", V, D)
    elif arch in ("llama", "mistral"):
        D, H, Hkv, hd, I, nl = 48, 4, 2, 16, 96, 2
        cfg = {"architectures": ["MistralForCausalLM" if arch == "mistral" else "LlamaForCausalLM"],
               "model_type": arch, "vocab_size": V, "hidden_size": D, "intermediate_size": I,
               "num_hidden_layers": nl, "num_attention_heads": H, "num_key_value_heads": Hkv, "head_dim": hd,
               "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
               "tie_word_embeddings": False, "attention_bias": False, "hidden_act": "silu"}
        if arch == "llama":
            cfg["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
        else:
            cfg["sliding_window"] = 6
        w("model.embed_tokens.weight", V, D, scale=1.0)
        for l in range(nl):
            p = f"model.layers.{l}."
            t[p + "input_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(D)
            t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.standard_normal(D)
            w(p + "self_attn.q_proj.weight", H * hd, D)
            w(p + "self_attn.k_proj.weight", Hkv * hd, D)
            w(p + "self_attn.v_proj.weight", Hkv * hd, D)
            w(p + "self_attn.o_proj.weight", D, H * hd)
            w(p + "mlp.gate_proj.weight", I, D)
            w(p + "mlp.up_proj.weight", I, D)
            w(p + "mlp.down_proj.weight", D, I)
        t["model.norm.weight"] = 1 + 0.1 * rng.standard_normal(D)
        w("lm_head.weight", V, D)
    elif arch == "gla":
        D, H, nl, I, r = 48, 4, 2, 96, 16
        Kd, Vd = D // 2, D  # expand_k 0.5, expand_v 1
        cfg = {"architectures": ["GLAForCausalLM"], "model_type": "gla", "vocab_size": V, "hidden_size": D,
               "expand_k": 0.5, "expand_v": 1, "num_heads": H, "num_kv_heads": None, "num_hidden_layers": nl,
               "intermediate_size": I, "hidden_act": "swish", "norm_eps": 1e-6, "use_output_gate": True,
               "fuse_norm": True, "feature_map": None, "use_short_conv": False, "attn_mode": "chunk",
               "tie_word_embeddings": False}
        w("model.embeddings.weight", V, D, scale=1.0)
        for l in range(nl):
            p = f"model.layers.{l}."
            t[p + "attn_norm.weight"] = 1 + 0.1 * rng.standard_normal(D)
            t[p + "mlp_norm.weight"] = 1 + 0.1 * rng.standard_normal(D)
            w(p + "attn.q_proj.weight", Kd, D)
            w(p + "attn.k_proj.weight", Kd, D)
            w(p + "attn.v_proj.weight", Vd, D)
            w(p + "attn.g_proj.weight", Vd, D)
            w(p + "attn.gk_proj.0.weight", r, D)
            w(p + "attn.gk_proj.1.weight", Kd, r)
            t[p + "attn.gk_proj.1.bias"] = rng.uniform(1, 4, Kd)
            w(p + "attn.o_proj.weight", D, Vd)
            t[p + "attn.g_norm_swish_gate.weight"] = 1 + 0.1 * rng.standard_normal(Vd // H)
            w(p + "mlp.gate_proj.weight", I, D)
            w(p + "mlp.up_proj.weight", I, D)
            w(p + "mlp.down_proj.weight", D, I)
        t["model.norm.weight"] = 1 + 0.1 * rng.standard_normal(D)
        w("lm_head.weight", V, D)
    else:
        raise SystemExit(f"unknown --arch {arch}")
    os.makedirs(args.outdir, exist_ok=True)
    with open(os.path.join(args.outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if args.sharded:
        names = sorted(t)
        half = len(names) // 2
        parts = [names[:half], names[half:]]
        wm = {}
        for k, part in enumerate(parts):
            fn = f"model-{k + 1:05d}-of-00002.safetensors"
            write_safetensors(os.path.join(args.outdir, fn), {n: t[n] for n in part}, args.dtype)
            wm.update({n: fn for n in part})
        json.dump({"metadata": {}, "weight_map": wm}, open(os.path.join(args.outdir, "model.safetensors.index.json"), "w"),
                  indent=1)
    else:
        write_safetensors(os.path.join(args.outdir, "model.safetensors"), t, args.dtype)
    print(args.outdir)


# ---------------------------------------------------------------------------------------------
# forward passes (float64)


def rms(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def causal_depthwise_conv(x, weight, bias):
    """x [B, L, C], weight [C, 1, K] → [B, L, C]; out_t = Σ_k w[k] x_{t-(K-1)+k} + b."""
    B, L, C = x.shape
    K = weight.shape[-1]
    xp = torch.nn.functional.pad(x.transpose(1, 2), (K - 1, 0))
    y = torch.nn.functional.conv1d(xp, weight, bias, groups=C)
    return y.transpose(1, 2)


def silu(x):
    return x * torch.sigmoid(x)


def mamba_forward(cfg, W, tokens, ops):
    falcon = cfg["model_type"] == "falcon_mamba"
    emb = W.get("backbone.embeddings.weight", W.get("backbone.embedding.weight"))
    N, eps = cfg["state_size"], cfg["layer_norm_epsilon"]
    h = emb[tokens]
    for l in range(cfg["num_hidden_layers"]):
        p = f"backbone.layers.{l}."
        res = h
        x = rms(h, W[p + "norm.weight"], eps)
        proj = x @ W[p + "mixer.in_proj.weight"].T
        E = proj.shape[-1] // 2
        xs, z = proj[..., :E], proj[..., E:]
        xs = silu(causal_depthwise_conv(xs, W[p + "mixer.conv1d.weight"], W.get(p + "mixer.conv1d.bias")))
        xdbl = xs @ W[p + "mixer.x_proj.weight"].T
        R = xdbl.shape[-1] - 2 * N
        dtr, Bm, Cm = xdbl[..., :R], xdbl[..., R:R + N], xdbl[..., R + N:]
        if falcon:
            e2 = cfg.get("mixer_rms_eps", 1e-6)
            Bm, Cm, dtr = (v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + e2) for v in (Bm, Cm, dtr))
        dt = torch.nn.functional.softplus(dtr @ W[p + "mixer.dt_proj.weight"].T + W[p + "mixer.dt_proj.bias"])
        A = -torch.exp(W[p + "mixer.A_log"])
        Bsz, L, _ = xs.shape
        s = torch.zeros(Bsz, E, N)
        ys = []
        for t in range(L):
            s = torch.exp(dt[:, t, :, None] * A) * s + dt[:, t, :, None] * Bm[:, t, None, :] * xs[:, t, :, None]
            ys.append((s * Cm[:, t, None, :]).sum(-1))
        y = torch.stack(ys, 1) + xs * W[p + "mixer.D"]
        y = y * silu(z)
        h = res + y @ W[p + "mixer.out_proj.weight"].T
        ops.append(("backbone.layers.%d.mixer" % l, "mamba", l,
                    dict(dt=dt.transpose(1, 2), A=A, B=Bm, C=Cm)))
    h = rms(h, W["backbone.norm_f.weight"], eps)
    head = W.get("lm_head.weight", emb)
    return h @ head.T


def mamba2_forward(cfg, W, tokens, ops):
    N, eps, G, H, P = cfg["state_size"], cfg["layer_norm_epsilon"], cfg["n_groups"], cfg["num_heads"], cfg["head_dim"]
    lo, hi = cfg.get("time_step_limit", [0.0, float("inf")])
    emb = W["backbone.embeddings.weight"]
    h = emb[tokens]
    E = H * P
    for l in range(cfg["num_hidden_layers"]):
        p = f"backbone.layers.{l}."
        res = h
        x = rms(h, W[p + "norm.weight"], eps)
        proj = x @ W[p + "mixer.in_proj.weight"].T
        conv_dim = E + 2 * G * N
        d_mlp = (proj.shape[-1] - 2 * E - 2 * G * N - H) // 2
        gate = proj[..., 2 * d_mlp:2 * d_mlp + E]
        xBC = proj[..., 2 * d_mlp + E:2 * d_mlp + E + conv_dim]
        dt = proj[..., -H:]
        xBC = silu(causal_depthwise_conv(xBC, W[p + "mixer.conv1d.weight"], W.get(p + "mixer.conv1d.bias")))
        xs, Bm, Cm = xBC[..., :E], xBC[..., E:E + G * N], xBC[..., E + G * N:]
        dt = torch.clamp(torch.nn.functional.softplus(dt + W[p + "mixer.dt_bias"]), lo, hi)
        A = -torch.exp(W[p + "mixer.A_log"])
        Bsz, L, _ = xs.shape
        xs4 = xs.reshape(Bsz, L, H, P)
        Bg = Bm.reshape(Bsz, L, G, N)
        Cg = Cm.reshape(Bsz, L, G, N)
        grp = torch.arange(H) // (H // G)
        s = torch.zeros(Bsz, H, P, N)
        ys = []
        for t in range(L):
            Bt, Ct = Bg[:, t, grp], Cg[:, t, grp]  # [B, H, N]
            s = torch.exp(dt[:, t, :, None, None] * A[None, :, None, None]) * s \
                + dt[:, t, :, None, None] * xs4[:, t, :, :, None] * Bt[:, :, None, :]
            ys.append((s * Ct[:, :, None, :]).sum(-1))
        y = torch.stack(ys, 1) + xs4 * W[p + "mixer.D"][None, None, :, None]
        y = y.reshape(Bsz, L, E)
        y = y * silu(gate)  # gated RMSNorm over the full width (HF transformers)
        y = W[p + "mixer.norm.weight"] * (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps))
        h = res + y @ W[p + "mixer.out_proj.weight"].T
        ops.append(("backbone.layers.%d.mixer" % l, "mamba2", l,
                    dict(dt=dt.transpose(1, 2), A=A, B=Bg.permute(0, 2, 1, 3), C=Cg.permute(0, 2, 1, 3))))
    h = rms(h, W["backbone.norm_f.weight"], eps)
    return h @ W.get("lm_head.weight", emb).T


def rope_inv_freq(cfg, hd):
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / theta ** (torch.arange(0, hd, 2) / hd)
    sc = cfg.get("rope_scaling") or {}
    kind = sc.get("rope_type", sc.get("type"))
    if kind == "llama3":
        f, lo, hi, orig = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"], sc["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        lo_wl, hi_wl = orig / lo, orig / hi
        scaled = torch.where(wavelen > lo_wl, inv / f, inv)
        smooth = (orig / wavelen - lo) / (hi - lo)
        mid = (1 - smooth) * scaled / f + smooth * scaled
        is_mid = (wavelen >= hi_wl) & (wavelen <= lo_wl)
        inv = torch.where(is_mid, mid, scaled)
    elif kind == "linear":
        inv = inv / sc["factor"]
    elif kind not in (None, "default"):
        raise SystemExit(f"rope_scaling type {kind} not supported by the reference")
    return inv


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    rot = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rot * sin


def llama_forward(cfg, W, tokens, ops):
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads", H)
    hd = cfg.get("head_dim") or D // H
    eps = cfg["rms_norm_eps"]
    window = cfg.get("sliding_window") or 0
    h = W["model.embed_tokens.weight"][tokens]
    Bsz, L, _ = h.shape
    inv = rope_inv_freq(cfg, hd)
    ang = torch.arange(L)[:, None] * inv[None]
    emb = torch.cat([ang, ang], -1)
    cos, sin = torch.cos(emb), torch.sin(emb)
    i, j = torch.meshgrid(torch.arange(L), torch.arange(L), indexing="ij")
    allowed = j <= i
    if window:
        allowed = allowed & (i - j < window)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        res = h
        x = rms(h, W[p + "input_layernorm.weight"], eps)
        q = (x @ W[p + "self_attn.q_proj.weight"].T + W.get(p + "self_attn.q_proj.bias", 0)).reshape(Bsz, L, H, hd).transpose(1, 2)
        k = (x @ W[p + "self_attn.k_proj.weight"].T + W.get(p + "self_attn.k_proj.bias", 0)).reshape(Bsz, L, Hkv, hd).transpose(1, 2)
        v = (x @ W[p + "self_attn.v_proj.weight"].T + W.get(p + "self_attn.v_proj.bias", 0)).reshape(Bsz, L, Hkv, hd).transpose(1, 2)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(~allowed, float("-inf"))
        att = torch.softmax(scores, -1)
        o = (att @ v).transpose(1, 2).reshape(Bsz, L, H * hd)
        h = res + o @ W[p + "self_attn.o_proj.weight"].T
        res = h
        x = rms(h, W[p + "post_attention_layernorm.weight"], eps)
        mlp = (silu(x @ W[p + "mlp.gate_proj.weight"].T) * (x @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
        h = res + mlp
        ops.append(("model.layers.%d.self_attn" % l, "softmax_attention", l,
                    dict(q=q, k=k, scale=1 / math.sqrt(hd), window=window if window and window < L else 0)))
    h = rms(h, W["model.norm.weight"], eps)
    return h @ W.get("lm_head.weight", W["model.embed_tokens.weight"]).T


def gla_forward(cfg, W, tokens, ops):
    """flash-linear-attention GLAForCausalLM (no short conv, no feature map, fused norm+swish gate)."""
    D, H, eps = cfg["hidden_size"], cfg["num_heads"], cfg.get("norm_eps", 1e-6)
    Hkv = cfg.get("num_kv_heads") or H
    Kd, Vd = int(D * cfg.get("expand_k", 0.5)), int(D * cfg.get("expand_v", 1))
    dk, dv = Kd // H, Vd // H
    h = W["model.embeddings.weight"][tokens]
    Bsz, L, _ = h.shape
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        res = h
        x = rms(h, W[p + "attn_norm.weight"], eps)
        q = (x @ W[p + "attn.q_proj.weight"].T).reshape(Bsz, L, H, dk)
        k = (x @ W[p + "attn.k_proj.weight"].T).reshape(Bsz, L, Hkv, dk).repeat_interleave(H // Hkv, dim=2)
        v = (x @ W[p + "attn.v_proj.weight"].T).reshape(Bsz, L, Hkv, dv).repeat_interleave(H // Hkv, dim=2)
        gk = (x @ W[p + "attn.gk_proj.0.weight"].T) @ W[p + "attn.gk_proj.1.weight"].T + W[p + "attn.gk_proj.1.bias"]
        gk = (torch.nn.functional.logsigmoid(gk) / 16.0).reshape(Bsz, L, Hkv, dk).repeat_interleave(H // Hkv, dim=2)
        qs = q * dk ** -0.5
        S = torch.zeros(Bsz, H, dk, dv)
        outs = []
        for t in range(L):
            S = torch.exp(gk[:, t])[..., None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
            outs.append(torch.einsum("bhk,bhkv->bhv", qs[:, t], S))
        o = torch.stack(outs, 1)  # [B, L, H, dv]
        g = (x @ W[p + "attn.g_proj.weight"].T).reshape(Bsz, L, H, dv)
        o = rms(o, W[p + "attn.g_norm_swish_gate.weight"], eps) * silu(g)
        h = res + o.reshape(Bsz, L, Vd) @ W[p + "attn.o_proj.weight"].T
        res = h
        x = rms(h, W[p + "mlp_norm.weight"], eps)
        h = res + (silu(x @ W[p + "mlp.gate_proj.weight"].T) * (x @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
        ops.append(("model.layers.%d.attn" % l, "gla", l,
                    dict(q=qs.transpose(1, 2), k=k.transpose(1, 2), log_decay=gk.transpose(1, 2))))
    h = rms(h, W["model.norm.weight"], eps)
    return h @ W.get("lm_head.weight", W["model.embeddings.weight"]).T


def forward(args):
    cfg = json.load(open(os.path.join(args.ckpt, "config.json")))
    W = load_checkpoint(args.ckpt)
    tokens = torch.tensor([[int(v) for v in line.split()] for line in open(args.tokens) if line.strip()])
    arch = cfg["architectures"][0]
    ops = []
    with torch.no_grad():
        if arch in ("MambaForCausalLM", "FalconMambaForCausalLM"):
            logits = mamba_forward(cfg, W, tokens, ops)
        elif arch == "Mamba2ForCausalLM":
            logits = mamba2_forward(cfg, W, tokens, ops)
        elif arch in ("LlamaForCausalLM", "MistralForCausalLM"):
            logits = llama_forward(cfg, W, tokens, ops)
        elif arch == "GLAForCausalLM":
            logits = gla_forward(cfg, W, tokens, ops)
        else:
            raise SystemExit(f"unsupported architecture {arch}")
    with OperatorFileWriter(args.output, command_line=" ".join(sys.argv)) as w:
        for name, family, idx, d in ops:
            if family == "mamba":
                w.add_mamba(name, d["dt"], d["A"], d["B"], d["C"], layer_index=idx)
            elif family == "mamba2":
                w.add_mamba2(name, d["dt"], d["A"], d["B"], d["C"], layer_index=idx)
            elif family == "gla":
                w.add_gla(name, d["q"], d["k"], d["log_decay"], layer_index=idx)
            else:
                w.add_softmax_attention(name, d["q"], d["k"], scale=d["scale"], window=d["window"], layer_index=idx)
        w._file["logits"] = logits.numpy()
        w._file["tokens"] = tokens.numpy().astype(np.int32)
    print(args.output)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("outdir")
    m.add_argument("--arch", required=True)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16", "F64"])
    m.add_argument("--sharded", action="store_true")
    m.add_argument("--size", default="tiny", choices=["tiny", "mamba130m"])
    m.add_argument("--original-keys", action="store_true", help="mamba_ssm's backbone.embedding key")
    m.add_argument("--untied", action="store_true", help="write an lm_head.weight")
    f = sub.add_parser("forward")
    f.add_argument("ckpt")
    f.add_argument("--tokens", required=True)
    f.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    make(a) if a.cmd == "make" else forward(a)


if __name__ == "__main__":
    main()
