#!/usr/bin/python3
"""Random checkpoints in the upstream Hugging Face layout, for testing `ess analyze`.

    make_checkpoints.py OUTDIR --arch ARCH [--seed S]
        ARCH: mamba falcon_mamba mamba2 llama mistral gla gpt2 gpt_neox gpt_neox_sequential phi qwen2 qwen3 gemma2 lfm2 falcon_h1 jamba
        [--size tiny|mamba130m] [--dtype F32|F16|BF16|F64] [--sharded [--shards N]]
        [--tie auto|yes|no] [--rope-format legacy|v5] [--llama-rope default|linear|llama3]
        [--gpt2-names gpt2lmhead|gpt2model] [--vocab N] [--conv-bias]
        [--mamba-norm after|before|none] [--biases]
    make_checkpoints.py OUTDIR --published mamba-130m|llama-3.2-1b|qwen2.5-0.5b|pythia-160m|lfm2-350m
        [--seed S] [--header-only]

Writes OUTDIR/config.json and OUTDIR/model.safetensors (or model-0000k-of-0000N.safetensors plus
model.safetensors.index.json with --sharded). Tensor names and config.json fields are those of
Hugging Face transformers' MambaForCausalLM, FalconMambaForCausalLM, Mamba2ForCausalLM,
LlamaForCausalLM, MistralForCausalLM, GPT2LMHeadModel, GPTNeoXForCausalLM (gpt_neox_sequential:
use_parallel_residual false), PhiForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Gemma2ForCausalLM, Lfm2ForCausalLM,
FalconH1ForCausalLM, JambaForCausalLM
and flash-linear-attention's GLAForCausalLM (see README.md).
safetensors are written by hand (st_io.py). Weights are deterministic in --seed; --size tiny
keeps every file well under 1 MB; --size mamba130m gives the dimensions of the ~130M models
(state-spaces/mamba-130m-hf and mamba2-130m; a 130M-class shape for the others) with random weights.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from published_shapes import PUBLISHED, write_published  # noqa: E402
from st_io import TORCH_DTYPE_NAME, write_safetensors  # noqa: E402


class Gen:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.t = {}

    def linear(self, name, out_f, in_f, scale=1.0):
        self.t[name] = self.rng.standard_normal((out_f, in_f)) * (scale / math.sqrt(in_f))

    def conv1d(self, name, in_f, out_f, scale=1.0):
        """GPT-2's Conv1D weight, stored [in, out] (the transpose of nn.Linear's)."""
        self.t[name] = self.rng.standard_normal((in_f, out_f)) * (scale / math.sqrt(in_f))

    def normal(self, name, shape, std):
        self.t[name] = self.rng.standard_normal(shape) * std

    def norm(self, name, n):
        self.t[name] = 1.0 + 0.1 * self.rng.standard_normal(n)

    def inv_softplus_dt(self, name, n, lo=1e-3, hi=1e-1):
        """Mamba's dt bias init: dt log-uniform in [lo, hi], stored as softplus^{-1}(dt)."""
        dt = np.exp(self.rng.uniform(math.log(lo), math.log(hi), n))
        self.t[name] = dt + np.log(-np.expm1(-dt))


def make_mamba(g, arch, big, tie):
    V, D, N, K, nl = (50280, 768, 16, 4, 24) if big else (96, 32, 8, 4, 2)
    E = 2 * D
    R = math.ceil(D / 16)
    cfg = {"architectures": ["FalconMambaForCausalLM" if arch == "falcon_mamba" else "MambaForCausalLM"],
           "model_type": arch, "vocab_size": V, "hidden_size": D, "state_size": N, "num_hidden_layers": nl,
           "layer_norm_epsilon": 1e-5, "pad_token_id": 0, "bos_token_id": 0, "eos_token_id": 0, "expand": 2,
           "conv_kernel": K, "use_bias": False, "use_conv_bias": True, "hidden_act": "silu",
           "initializer_range": 0.1, "residual_in_fp32": True, "time_step_rank": R, "time_step_scale": 1.0,
           "time_step_min": 0.001, "time_step_max": 0.1, "time_step_init_scheme": "random",
           "time_step_floor": 1e-4, "rescale_prenorm_residual": False, "use_cache": True,
           "intermediate_size": E, "tie_word_embeddings": tie}
    if arch == "falcon_mamba":
        cfg["mixer_rms_eps"] = 1e-6
        cfg["use_mambapy"] = False
    g.normal("backbone.embeddings.weight", (V, D), 1.0)
    for l in range(nl):
        p = f"backbone.layers.{l}."
        g.norm(p + "norm.weight", D)
        g.linear(p + "mixer.in_proj.weight", 2 * E, D)
        g.normal(p + "mixer.conv1d.weight", (E, 1, K), 1 / math.sqrt(K))
        g.normal(p + "mixer.conv1d.bias", (E,), 0.1)
        g.linear(p + "mixer.x_proj.weight", R + 2 * N, E)
        g.linear(p + "mixer.dt_proj.weight", E, R)
        g.inv_softplus_dt(p + "mixer.dt_proj.bias", E)
        g.t[p + "mixer.A_log"] = np.log(np.tile(np.arange(1, N + 1, dtype=float), (E, 1))) \
            + 0.05 * g.rng.standard_normal((E, N))
        g.t[p + "mixer.D"] = 1.0 + 0.1 * g.rng.standard_normal(E)
        g.linear(p + "mixer.out_proj.weight", D, E)
    g.norm("backbone.norm_f.weight", D)
    if not tie:
        g.linear("lm_head.weight", V, D)
    return cfg


def make_mamba2(g, big, tie):
    V, D, N, K, nl, P, G = (50288, 768, 128, 4, 24, 64, 1) if big else (96, 32, 8, 4, 2, 16, 2)
    E = 2 * D
    H = E // P
    cfg = {"architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "vocab_size": V, "hidden_size": D,
           "state_size": N, "num_hidden_layers": nl, "layer_norm_epsilon": 1e-5, "pad_token_id": 0,
           "bos_token_id": 0, "eos_token_id": 0, "expand": 2, "conv_kernel": K, "n_groups": G, "num_heads": H,
           "head_dim": P, "use_bias": False, "use_conv_bias": True, "hidden_act": "silu", "initializer_range": 0.1,
           "residual_in_fp32": True, "time_step_rank": math.ceil(D / 16), "time_step_min": 0.001,
           "time_step_max": 0.1, "time_step_floor": 1e-4, "time_step_limit": [0.0, float("inf")],
           "rescale_prenorm_residual": False, "use_cache": True, "rms_norm": True, "chunk_size": 256,
           "tie_word_embeddings": tie}
    conv_dim = E + 2 * G * N
    g.normal("backbone.embeddings.weight", (V, D), 1.0)
    for l in range(nl):
        p = f"backbone.layers.{l}."
        g.norm(p + "norm.weight", D)
        g.linear(p + "mixer.in_proj.weight", E + conv_dim + H, D)
        g.normal(p + "mixer.conv1d.weight", (conv_dim, 1, K), 1 / math.sqrt(K))
        g.normal(p + "mixer.conv1d.bias", (conv_dim,), 0.1)
        g.inv_softplus_dt(p + "mixer.dt_bias", H)
        g.t[p + "mixer.A_log"] = np.log(g.rng.uniform(1, 16, H))
        g.t[p + "mixer.D"] = 1.0 + 0.1 * g.rng.standard_normal(H)
        g.norm(p + "mixer.norm.weight", E)
        g.linear(p + "mixer.out_proj.weight", D, E)
    g.norm("backbone.norm_f.weight", D)
    if not tie:
        g.linear("lm_head.weight", V, D)
    return cfg


def make_llama(g, arch, big, tie, rope_format, rope_kind):
    if big:
        V, D, H, Hkv, hd, I, nl, win = 32000, 768, 12, 4, 64, 2048, 12, 256
    else:  # head_dim != hidden / heads on purpose: head_dim must come from config.json
        V, D, H, Hkv, hd, I, nl, win = 96, 48, 4, 2, 16, 96, 2, 6
    cfg = {"architectures": ["MistralForCausalLM" if arch == "mistral" else "LlamaForCausalLM"],
           "model_type": arch, "vocab_size": V, "hidden_size": D, "intermediate_size": I,
           "num_hidden_layers": nl, "num_attention_heads": H, "num_key_value_heads": Hkv, "head_dim": hd,
           "hidden_act": "silu", "max_position_embeddings": 4096 if big else 256, "initializer_range": 0.02,
           "rms_norm_eps": 1e-5, "use_cache": True, "bos_token_id": 1, "eos_token_id": 2,
           "tie_word_embeddings": tie, "attention_dropout": 0.0}
    theta = 500000.0 if arch == "llama" else 10000.0
    rope = None
    if arch == "llama":
        cfg.update({"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1})
        if rope_kind == "llama3":  # original context small enough that all three frequency bands occur
            rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192 if big else 32}
        elif rope_kind == "linear":
            rope = {"rope_type": "linear", "factor": 2.0}
    else:
        cfg["sliding_window"] = win
    if rope_format == "v5":
        cfg["rope_parameters"] = dict(rope or {"rope_type": "default"}, rope_theta=theta)
    else:
        cfg["rope_theta"] = theta
        cfg["rope_scaling"] = rope
    g.normal("model.embed_tokens.weight", (V, D), 1.0)
    for l in range(nl):
        p = f"model.layers.{l}."
        g.norm(p + "input_layernorm.weight", D)
        g.norm(p + "post_attention_layernorm.weight", D)
        g.linear(p + "self_attn.q_proj.weight", H * hd, D, scale=2.0)  # sharper attention than 1/sqrt(D)
        g.linear(p + "self_attn.k_proj.weight", Hkv * hd, D, scale=2.0)
        g.linear(p + "self_attn.v_proj.weight", Hkv * hd, D)
        g.linear(p + "self_attn.o_proj.weight", D, H * hd)
        g.linear(p + "mlp.gate_proj.weight", I, D)
        g.linear(p + "mlp.up_proj.weight", I, D)
        g.linear(p + "mlp.down_proj.weight", D, I)
    g.norm("model.norm.weight", D)
    if not tie:
        g.linear("lm_head.weight", V, D)
    return cfg


def make_gla(g, big, tie):
    V, D, H, I, nl = (32000, 768, 4, 2048, 12) if big else (96, 32, 2, 64, 2)
    expand_k, expand_v, rank = 0.5, 1.0, 16
    dk, dv = int(D * expand_k), int(D * expand_v)
    cfg = {"architectures": ["GLAForCausalLM"], "model_type": "gla", "vocab_size": V, "hidden_size": D,
           "expand_k": expand_k, "expand_v": expand_v, "hidden_ratio": 4, "intermediate_size": I,
           "num_hidden_layers": nl, "num_heads": H, "num_kv_heads": None, "feature_map": None, "attn_mode": "chunk",
           "use_short_conv": False, "conv_size": 4, "use_output_gate": True, "clamp_min": None,
           "hidden_act": "swish", "max_position_embeddings": 2048, "elementwise_affine": True, "norm_eps": 1e-6,
           "use_gk": True, "use_gv": False, "attn": None, "use_cache": True, "pad_token_id": None,
           "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": tie, "initializer_range": 0.02,
           "fuse_norm": True, "fuse_swiglu": True, "fuse_cross_entropy": True}
    g.normal("model.embeddings.weight", (V, D), 1.0)
    for l in range(nl):
        p = f"model.layers.{l}."
        g.norm(p + "attn_norm.weight", D)
        g.linear(p + "attn.q_proj.weight", dk, D, scale=2.0)
        g.linear(p + "attn.k_proj.weight", dk, D, scale=2.0)
        g.linear(p + "attn.v_proj.weight", dv, D)
        g.linear(p + "attn.g_proj.weight", dv, D)
        g.linear(p + "attn.gk_proj.0.weight", rank, D)
        g.linear(p + "attn.gk_proj.1.weight", dk, rank)
        g.normal(p + "attn.gk_proj.1.bias", (dk,), 1.0)
        g.linear(p + "attn.o_proj.weight", D, dv)
        g.norm(p + "attn.g_norm_swish_gate.weight", dv // H)
        g.norm(p + "mlp_norm.weight", D)
        g.linear(p + "mlp.gate_proj.weight", I, D)
        g.linear(p + "mlp.up_proj.weight", I, D)
        g.linear(p + "mlp.down_proj.weight", D, I)
    g.norm("model.norm.weight", D)
    if not tie:
        g.linear("lm_head.weight", V, D)
    return cfg


def make_gpt2(g, big, tie, vocab=None):
    V, D, H, nl, P = (50257, 768, 12, 12, 1024) if big else (96, 48, 4, 2, 32)
    V = vocab or V
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": V, "n_positions": P,
           "n_embd": D, "n_layer": nl, "n_head": H, "n_inner": None, "activation_function": "gelu_new",
           "resid_pdrop": 0.1, "embd_pdrop": 0.1, "attn_pdrop": 0.1, "layer_norm_epsilon": 1e-5,
           "initializer_range": 0.02, "summary_type": "cls_index", "summary_use_proj": True,
           "summary_activation": None, "summary_proj_to_labels": True, "summary_first_dropout": 0.1,
           "scale_attn_weights": True, "use_cache": True, "scale_attn_by_inverse_layer_idx": False,
           "reorder_and_upcast_attn": False, "bos_token_id": V - 1, "eos_token_id": V - 1}
    if not tie:  # GPT2Config leaves tie_word_embeddings at its default (true) and does not write it
        cfg["tie_word_embeddings"] = False
    I = 4 * D
    g.normal("transformer.wte.weight", (V, D), 1.0)
    g.normal("transformer.wpe.weight", (P, D), 0.5)
    for l in range(nl):
        p = f"transformer.h.{l}."
        g.norm(p + "ln_1.weight", D)
        g.normal(p + "ln_1.bias", (D,), 0.1)
        g.conv1d(p + "attn.c_attn.weight", D, 3 * D, scale=2.0)  # Conv1D: [in, out]
        g.normal(p + "attn.c_attn.bias", (3 * D,), 0.1)
        g.conv1d(p + "attn.c_proj.weight", D, D)
        g.normal(p + "attn.c_proj.bias", (D,), 0.1)
        g.norm(p + "ln_2.weight", D)
        g.normal(p + "ln_2.bias", (D,), 0.1)
        g.conv1d(p + "mlp.c_fc.weight", D, I)
        g.normal(p + "mlp.c_fc.bias", (I,), 0.1)
        g.conv1d(p + "mlp.c_proj.weight", I, D)
        g.normal(p + "mlp.c_proj.bias", (D,), 0.1)
    g.norm("transformer.ln_f.weight", D)
    g.normal("transformer.ln_f.bias", (D,), 0.1)
    if not tie:
        g.linear("lm_head.weight", V, D)
    return cfg


def make_gpt_neox(g, big, tie, parallel):
    # Pythia-160M: D 768, 12 layers, 12 heads, rotary_pct 0.25; tiny: head_dim 16 so that 4 dims rotate.
    V, D, H, I, nl = (50304, 768, 12, 3072, 12) if big else (96, 64, 4, 128, 2)
    cfg = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "vocab_size": V, "hidden_size": D,
           "num_hidden_layers": nl, "num_attention_heads": H, "intermediate_size": I, "hidden_act": "gelu",
           "rotary_pct": 0.25, "rotary_emb_base": 10000, "attention_dropout": 0.0, "hidden_dropout": 0.0,
           "classifier_dropout": 0.1, "max_position_embeddings": 2048, "initializer_range": 0.02,
           "layer_norm_eps": 1e-5, "use_cache": True, "bos_token_id": 0, "eos_token_id": 0,
           "tie_word_embeddings": tie, "use_parallel_residual": parallel, "rope_scaling": None,
           "attention_bias": True}
    g.normal("gpt_neox.embed_in.weight", (V, D), 1.0)
    for l in range(nl):
        p = f"gpt_neox.layers.{l}."
        for n in ("input_layernorm", "post_attention_layernorm"):
            g.norm(p + n + ".weight", D)
            g.normal(p + n + ".bias", (D,), 0.1)
        g.linear(p + "attention.query_key_value.weight", 3 * D, D, scale=2.0)  # rows: per head [q | k | v]
        g.normal(p + "attention.query_key_value.bias", (3 * D,), 0.1)
        g.linear(p + "attention.dense.weight", D, D)
        g.normal(p + "attention.dense.bias", (D,), 0.1)
        g.linear(p + "mlp.dense_h_to_4h.weight", I, D)
        g.normal(p + "mlp.dense_h_to_4h.bias", (I,), 0.1)
        g.linear(p + "mlp.dense_4h_to_h.weight", D, I)
        g.normal(p + "mlp.dense_4h_to_h.bias", (D,), 0.1)
    g.norm("gpt_neox.final_layer_norm.weight", D)
    g.normal("gpt_neox.final_layer_norm.bias", (D,), 0.1)
    if not tie:
        g.linear("embed_out.weight", V, D)
    return cfg


def make_phi(g, big, tie):
    # Phi-2 (D 2560, 32 layers, 32 heads of 80, partial_rotary_factor 0.4: 32 rotated dims); big: a
    # 130M-class shape with Phi-2's head_dim 80; tiny: head_dim 16, int(16 * 0.4) = 6 rotated dims.
    V, D, H, I, nl = (51200, 960, 12, 3840, 12) if big else (96, 64, 4, 128, 2)
    cfg = {"architectures": ["PhiForCausalLM"], "model_type": "phi", "vocab_size": V, "hidden_size": D,
           "intermediate_size": I, "num_hidden_layers": nl, "num_attention_heads": H, "num_key_value_heads": None,
           "resid_pdrop": 0.1, "embd_pdrop": 0.0, "attention_dropout": 0.0, "hidden_act": "gelu_new",
           "max_position_embeddings": 2048, "initializer_range": 0.02, "layer_norm_eps": 1e-5, "use_cache": True,
           "tie_word_embeddings": tie, "rope_theta": 10000.0, "rope_scaling": None, "partial_rotary_factor": 0.4,
           "qk_layernorm": False, "bos_token_id": V - 1, "eos_token_id": V - 1}
    g.normal("model.embed_tokens.weight", (V, D), 1.0)
    for l in range(nl):
        p = f"model.layers.{l}."
        g.norm(p + "input_layernorm.weight", D)
        g.normal(p + "input_layernorm.bias", (D,), 0.1)
        for n in ("q_proj", "k_proj", "v_proj"):
            g.linear(p + f"self_attn.{n}.weight", D, D, scale=2.0 if n != "v_proj" else 1.0)
            g.normal(p + f"self_attn.{n}.bias", (D,), 0.1)
        g.linear(p + "self_attn.dense.weight", D, D)
        g.normal(p + "self_attn.dense.bias", (D,), 0.1)
        g.linear(p + "mlp.fc1.weight", I, D)
        g.normal(p + "mlp.fc1.bias", (I,), 0.1)
        g.linear(p + "mlp.fc2.weight", D, I)
        g.normal(p + "mlp.fc2.bias", (D,), 0.1)
    g.norm("model.final_layernorm.weight", D)
    g.normal("model.final_layernorm.bias", (D,), 0.1)
    if not tie:
        g.linear("lm_head.weight", V, D)
    g.normal("lm_head.bias", (V,), 0.1)
    return cfg


def make_qwen(g, arch, big, tie):
    """Qwen2 (q/k/v biases, head_dim = D / H) and Qwen3 (per-head q/k RMSNorm, head_dim from the config)."""
    if big:  # Qwen2.5-0.5B / Qwen3-0.6B-like
        V, D, H, Hkv, I, nl = 151936, 896, 14, 2, 4864, 24
        hd = 64 if arch == "qwen2" else 128
    else:
        V, D, H, Hkv, I, nl = 96, 48, 4, 2, 96, 2
        hd = 12 if arch == "qwen2" else 16  # Qwen3: head_dim != D / H on purpose
    cfg = {"architectures": ["Qwen2ForCausalLM" if arch == "qwen2" else "Qwen3ForCausalLM"], "model_type": arch,
           "vocab_size": V, "hidden_size": D, "intermediate_size": I, "num_hidden_layers": nl,
           "num_attention_heads": H, "num_key_value_heads": Hkv, "hidden_act": "silu",
           "max_position_embeddings": 32768, "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True,
           "tie_word_embeddings": tie, "rope_theta": 1000000.0, "rope_scaling": None, "use_sliding_window": False,
           "sliding_window": 4096 if big else 6,  # not used: use_sliding_window is false
           "max_window_layers": nl, "attention_dropout": 0.0, "bos_token_id": V - 2, "eos_token_id": V - 1}
    if arch == "qwen3":
        cfg.update({"head_dim": hd, "attention_bias": False})
    g.normal("model.embed_tokens.weight", (V, D), 1.0)
    for l in range(nl):
        p = f"model.layers.{l}."
        g.norm(p + "input_layernorm.weight", D)
        g.norm(p + "post_attention_layernorm.weight", D)
        g.linear(p + "self_attn.q_proj.weight", H * hd, D, scale=2.0)
        g.linear(p + "self_attn.k_proj.weight", Hkv * hd, D, scale=2.0)
        g.linear(p + "self_attn.v_proj.weight", Hkv * hd, D)
        if arch == "qwen2":
            g.normal(p + "self_attn.q_proj.bias", (H * hd,), 0.5)
            g.normal(p + "self_attn.k_proj.bias", (Hkv * hd,), 0.5)
            g.normal(p + "self_attn.v_proj.bias", (Hkv * hd,), 0.1)
        else:  # q/k norms: scales around 2 so that the normalized heads still give peaked attention
            g.t[p + "self_attn.q_norm.weight"] = 2.0 + 0.3 * g.rng.standard_normal(hd)
            g.t[p + "self_attn.k_norm.weight"] = 2.0 + 0.3 * g.rng.standard_normal(hd)
        g.linear(p + "self_attn.o_proj.weight", D, H * hd)
        g.linear(p + "mlp.gate_proj.weight", I, D)
        g.linear(p + "mlp.up_proj.weight", I, D)
        g.linear(p + "mlp.down_proj.weight", D, I)
    g.norm("model.norm.weight", D)
    if not tie:
        g.linear("lm_head.weight", V, D)
    return cfg


def make_gemma2(g, big, tie):
    # Gemma-2-2B: D 2304, 26 layers, H 8, Hkv 4, head_dim 256, I 9216, window 4096, caps 50 / 30,
    # query_pre_attn_scalar 256; big: a 130M-class shape with those heads and caps. Tiny: small caps
    # (2.0 / 5.0) so that tanh saturates on purpose, query_pre_attn_scalar != head_dim, window 6 < L.
    if big:
        V, D, H, Hkv, hd, I, nl, win, qs, acap, fcap = 32000, 768, 8, 4, 256, 3072, 12, 4096, 256, 50.0, 30.0
    else:
        V, D, H, Hkv, hd, I, nl, win, qs, acap, fcap = 96, 48, 4, 2, 16, 96, 2, 6, 24, 2.0, 5.0
    cfg = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "vocab_size": V, "hidden_size": D,
           "intermediate_size": I, "num_hidden_layers": nl, "num_attention_heads": H, "num_key_value_heads": Hkv,
           "head_dim": hd, "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 8192,
           "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True, "pad_token_id": 0,
           "eos_token_id": 1, "bos_token_id": 2, "tie_word_embeddings": tie, "rope_theta": 10000.0,
           "attention_bias": False, "attention_dropout": 0.0, "query_pre_attn_scalar": qs, "sliding_window": win,
           "final_logit_softcapping": fcap, "attn_logit_softcapping": acap, "cache_implementation": "hybrid"}
    g.normal("model.embed_tokens.weight", (V, D), 1.0 / math.sqrt(D))  # the model multiplies by sqrt(D)
    gn = lambda n, d: g.normal(n, (d,), 0.3)  # noqa: E731  Gemma norms scale by (1 + w)
    for l in range(nl):
        p = f"model.layers.{l}."
        for n in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm"):
            gn(p + n + ".weight", D)
        g.linear(p + "self_attn.q_proj.weight", H * hd, D, scale=2.0)
        g.linear(p + "self_attn.k_proj.weight", Hkv * hd, D, scale=2.0)
        g.linear(p + "self_attn.v_proj.weight", Hkv * hd, D)
        g.linear(p + "self_attn.o_proj.weight", D, H * hd)
        g.linear(p + "mlp.gate_proj.weight", I, D)
        g.linear(p + "mlp.up_proj.weight", I, D)
        g.linear(p + "mlp.down_proj.weight", D, I)
    gn("model.norm.weight", D)
    if not tie:
        g.linear("lm_head.weight", V, D, scale=4.0)
    return cfg


def make_lfm2(g, big, tie, conv_bias=False):
    """LFM2 (Lfm2ForCausalLM): gated short-conv layers and GQA attention layers per layer_types.
    Tiny: conv, attention, conv; block_ff_dim 96 → int(2·96/3) = 64 → rounded up to block_multiple_of
    24 = 72 (the auto-adjust path of Lfm2MLP); head_dim = D / H. Big: LFM2-350M's shapes."""
    if big:
        V, D, H, Hkv, I, K, mult = 65536, 1024, 16, 8, 6656, 3, 256
        types = ["conv", "conv", "full_attention", "conv", "conv", "full_attention", "conv", "conv",
                 "full_attention", "conv", "full_attention", "conv", "full_attention", "conv", "full_attention", "conv"]
    else:
        V, D, H, Hkv, I, K, mult = 96, 32, 4, 2, 96, 3, 24
        types = ["conv", "full_attention", "conv"]
    nl, hd = len(types), D // H
    cfg = {"architectures": ["Lfm2ForCausalLM"], "model_type": "lfm2", "vocab_size": V, "hidden_size": D,
           "intermediate_size": I, "block_ff_dim": I, "block_auto_adjust_ff_dim": True,
           "block_ffn_dim_multiplier": 1.0, "block_multiple_of": mult, "num_hidden_layers": nl,
           "num_attention_heads": H, "num_key_value_heads": Hkv, "max_position_embeddings": 128000,
           "initializer_range": 0.02, "norm_eps": 1e-5, "use_cache": True, "pad_token_id": 0, "bos_token_id": 1,
           "eos_token_id": 7, "tie_word_embeddings": tie, "rope_theta": 1000000.0, "conv_bias": conv_bias,
           "conv_L_cache": K, "layer_types": types,
           "full_attn_idxs": [i for i, t in enumerate(types) if t == "full_attention"]}
    Iw = int(2 * I / 3)
    Iw = mult * ((Iw + mult - 1) // mult)
    g.normal("model.embed_tokens.weight", (V, D), 1.0)
    for l, t in enumerate(types):
        p = f"model.layers.{l}."
        g.norm(p + "operator_norm.weight", D)
        g.norm(p + "ffn_norm.weight", D)
        if t == "full_attention":
            a = p + "self_attn."
            g.linear(a + "q_proj.weight", H * hd, D)
            g.linear(a + "k_proj.weight", Hkv * hd, D)
            g.linear(a + "v_proj.weight", Hkv * hd, D)
            g.linear(a + "out_proj.weight", D, H * hd)
            # q/k norms around 2: the normalized heads still give peaked attention
            g.t[a + "q_layernorm.weight"] = 2.0 + 0.3 * g.rng.standard_normal(hd)
            g.t[a + "k_layernorm.weight"] = 2.0 + 0.3 * g.rng.standard_normal(hd)
        else:
            c = p + "conv."
            g.linear(c + "in_proj.weight", 3 * D, D)
            g.normal(c + "conv.weight", (D, 1, K), 1 / math.sqrt(K))
            g.linear(c + "out_proj.weight", D, D)
            if conv_bias:
                g.normal(c + "in_proj.bias", (3 * D,), 0.1)
                g.normal(c + "conv.bias", (D,), 0.1)
                g.normal(c + "out_proj.bias", (D,), 0.1)
        g.linear(p + "feed_forward.w1.weight", Iw, D)
        g.linear(p + "feed_forward.w3.weight", Iw, D)
        g.linear(p + "feed_forward.w2.weight", D, Iw)
    g.norm("model.embedding_norm.weight", D)
    if not tie:
        g.linear("lm_head.weight", V, D)
    return cfg


def make_falcon_h1(g, big, tie, mamba_norm="after", biases=False):
    """Falcon-H1 (FalconH1ForCausalLM): Mamba2 and attention in parallel in every layer, muP
    multipliers. Tiny: head_dim 16 != D / H, mamba_d_ssm 48 != expand * D (d_head "auto" = 8), 2
    groups (the gated norm is per group), every multiplier != 1. mamba_norm: after (mamba_rms_norm
    with the gate applied first, mamba_norm_before_gate false), before, none (no gated norm: y * silu(z)).
    biases: attention_bias, mlp_bias, mamba_proj_bias, projectors_bias true and mamba_d_ssm null."""
    if big:  # Falcon-H1-0.5B-like
        V, D, H, Hkv, hd, I, nl, Es, Hm, G, N, K = 32784, 1024, 8, 2, 64, 2048, 36, 1536, 24, 1, 128, 4
    else:
        V, D, H, Hkv, hd, I, nl, Es, Hm, G, N, K = 96, 32, 4, 2, 16, 64, 2, 48, 6, 2, 8, 4
    E = 2 * D if biases else Es
    cfg = {"architectures": ["FalconH1ForCausalLM"], "model_type": "falcon_h1", "vocab_size": V, "hidden_size": D,
           "intermediate_size": I, "num_hidden_layers": nl, "num_attention_heads": H, "num_key_value_heads": Hkv,
           "head_dim": hd, "hidden_act": "silu", "initializer_range": 0.02, "rms_norm_eps": 1e-5, "use_cache": True,
           "num_logits_to_keep": 1, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
           "max_position_embeddings": 16384, "attention_dropout": 0.0,
           "mamba_d_ssm": None if biases else Es, "mamba_n_heads": Hm if not biases else E // 8, "mamba_d_head": "auto",
           "mamba_n_groups": G, "mamba_d_state": N, "mamba_d_conv": K, "mamba_expand": 2, "mamba_chunk_size": 128,
           "mamba_conv_bias": True, "mamba_proj_bias": biases, "mamba_norm_before_gate": mamba_norm == "before",
           "mamba_rms_norm": mamba_norm != "none", "time_step_min": 0.001, "time_step_max": 0.1,
           "time_step_limit": [0.0, float("inf")], "projectors_bias": biases, "rope_theta": 100000000000.0,
           "rope_scaling": None, "lm_head_multiplier": 0.8, "embedding_multiplier": 1.5,
           "mlp_multipliers": [1.2, 0.9], "key_multiplier": 0.7, "attention_out_multiplier": 0.9,
           "attention_in_multiplier": 1.1, "ssm_multipliers": [0.5, 1.2, 0.8, 1.3, 1.1], "ssm_in_multiplier": 1.05,
           "ssm_out_multiplier": 0.95, "attention_bias": biases, "mlp_bias": biases, "tie_word_embeddings": tie}
    Hm = cfg["mamba_n_heads"]
    conv_dim = E + 2 * G * N
    g.normal("model.embed_tokens.weight", (V, D), 1.0)
    for l in range(nl):
        p = f"model.layers.{l}."
        g.norm(p + "input_layernorm.weight", D)
        g.norm(p + "pre_ff_layernorm.weight", D)
        mp = p + "mamba."
        g.linear(mp + "in_proj.weight", E + conv_dim + Hm, D)
        g.normal(mp + "conv1d.weight", (conv_dim, 1, K), 1 / math.sqrt(K))
        g.normal(mp + "conv1d.bias", (conv_dim,), 0.1)
        g.inv_softplus_dt(mp + "dt_bias", Hm)
        g.t[mp + "A_log"] = np.log(g.rng.uniform(1, 16, Hm))
        g.t[mp + "D"] = 1.0 + 0.1 * g.rng.standard_normal(Hm)
        if mamba_norm != "none":
            g.norm(mp + "norm.weight", E)
        g.linear(mp + "out_proj.weight", D, E)
        a = p + "self_attn."
        g.linear(a + "q_proj.weight", H * hd, D, scale=2.0)
        g.linear(a + "k_proj.weight", Hkv * hd, D, scale=2.0)
        g.linear(a + "v_proj.weight", Hkv * hd, D)
        g.linear(a + "o_proj.weight", D, H * hd)
        f = p + "feed_forward."
        g.linear(f + "gate_proj.weight", I, D)
        g.linear(f + "up_proj.weight", I, D)
        g.linear(f + "down_proj.weight", D, I)
        if biases:
            g.normal(mp + "in_proj.bias", (E + conv_dim + Hm,), 0.1)
            g.normal(mp + "out_proj.bias", (D,), 0.1)
            for n, o in (("q_proj", H * hd), ("k_proj", Hkv * hd), ("v_proj", Hkv * hd), ("o_proj", D)):
                g.normal(a + n + ".bias", (o,), 0.1)
            for n, o in (("gate_proj", I), ("up_proj", I), ("down_proj", D)):
                g.normal(f + n + ".bias", (o,), 0.1)
    g.norm("model.final_layernorm.weight", D)
    if not tie:
        g.linear("lm_head.weight", V, D)
    return cfg


def make_jamba(g, big, tie):
    """Jamba (JambaForCausalLM): Mamba layers with inner RMSNorms, attention without positions every
    attn_layer_period layers, MoE MLPs (top-k of num_experts) every expert_layer_period layers. Tiny:
    4 layers, attention at 1 and 3 (period 2, offset 1), 4 experts (top 2) at 0 and 3 (period 3,
    offset 0): mamba + MoE, attention + dense, mamba + dense, attention + MoE."""
    if big:  # a Jamba-tiny-like shape
        V, D, H, Hkv, I, nl, N, K, ne, ap, ao, ep, eo = 65536, 1024, 16, 8, 4096, 8, 16, 4, 4, 4, 2, 2, 1
    else:
        V, D, H, Hkv, I, nl, N, K, ne, ap, ao, ep, eo = 96, 32, 4, 2, 48, 4, 8, 4, 4, 2, 1, 3, 0
    hd, E, R = D // H, 2 * D, math.ceil(D / 16)
    cfg = {"architectures": ["JambaForCausalLM"], "model_type": "jamba", "vocab_size": V, "hidden_size": D,
           "intermediate_size": I, "num_hidden_layers": nl, "num_attention_heads": H, "num_key_value_heads": Hkv,
           "hidden_act": "silu", "initializer_range": 0.02, "rms_norm_eps": 1e-6, "use_cache": True,
           "num_logits_to_keep": 1, "output_router_logits": False, "router_aux_loss_coef": 0.001, "pad_token_id": 0,
           "bos_token_id": 1, "eos_token_id": 2, "sliding_window": None, "max_position_embeddings": 262144,
           "attention_dropout": 0.0, "num_experts_per_tok": 2, "num_experts": ne, "expert_layer_period": ep,
           "expert_layer_offset": eo, "attn_layer_period": ap, "attn_layer_offset": ao, "use_mamba_kernels": False,
           "mamba_d_state": N, "mamba_d_conv": K, "mamba_expand": 2, "mamba_dt_rank": R, "mamba_conv_bias": True,
           "mamba_proj_bias": False, "tie_word_embeddings": tie}
    g.normal("model.embed_tokens.weight", (V, D), 1.0)
    for l in range(nl):
        p = f"model.layers.{l}."
        g.norm(p + "input_layernorm.weight", D)
        g.norm(p + "pre_ff_layernorm.weight", D)
        if l % ap == ao:
            a = p + "self_attn."
            g.linear(a + "q_proj.weight", H * hd, D, scale=2.0)
            g.linear(a + "k_proj.weight", Hkv * hd, D, scale=2.0)
            g.linear(a + "v_proj.weight", Hkv * hd, D)
            g.linear(a + "o_proj.weight", D, H * hd)
        else:
            mp = p + "mamba."
            g.linear(mp + "in_proj.weight", 2 * E, D)
            g.normal(mp + "conv1d.weight", (E, 1, K), 1 / math.sqrt(K))
            g.normal(mp + "conv1d.bias", (E,), 0.1)
            g.linear(mp + "x_proj.weight", R + 2 * N, E)
            g.linear(mp + "dt_proj.weight", E, R)
            g.inv_softplus_dt(mp + "dt_proj.bias", E)
            g.t[mp + "A_log"] = np.log(np.tile(np.arange(1, N + 1, dtype=float), (E, 1))) \
                + 0.05 * g.rng.standard_normal((E, N))
            g.t[mp + "D"] = 1.0 + 0.1 * g.rng.standard_normal(E)
            g.linear(mp + "out_proj.weight", D, E)
            g.norm(mp + "dt_layernorm.weight", R)
            g.norm(mp + "b_layernorm.weight", N)
            g.norm(mp + "c_layernorm.weight", N)
        f = p + "feed_forward."
        mlps = [f + f"experts.{e}." for e in range(ne)] if l % ep == eo else [f]
        if l % ep == eo:
            g.linear(f + "router.weight", ne, D, scale=3.0)
        for m in mlps:
            g.linear(m + "gate_proj.weight", I, D)
            g.linear(m + "up_proj.weight", I, D)
            g.linear(m + "down_proj.weight", D, I)
    g.norm("model.final_layernorm.weight", D)
    if not tie:
        g.linear("lm_head.weight", V, D)
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--arch", choices=["mamba", "falcon_mamba", "mamba2", "llama", "mistral", "gla", "gpt2", "gpt_neox",
                                       "gpt_neox_sequential", "phi", "qwen2", "qwen3", "gemma2", "lfm2", "falcon_h1", "jamba"])
    ap.add_argument("--published", choices=sorted(PUBLISHED),
                    help="the exact config.json and weight-file layout of a published model, random weights "
                         "(streamed; published_shapes.py); the other options do not apply")
    ap.add_argument("--header-only", action="store_true",
                    help="with --published: real headers, data left as a sparse hole of zeros (for inspect)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", default="tiny", choices=["tiny", "mamba130m"])
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16", "F64"])
    ap.add_argument("--sharded", action="store_true", help="write model-0000k-of-0000N.safetensors + index")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--tie", default="auto", choices=["auto", "yes", "no"],
                    help="tie lm_head to the embeddings (auto: the upstream default: mamba, gpt2, gemma2 yes, "
                         "others no)")
    ap.add_argument("--rope-format", default="legacy", choices=["legacy", "v5"],
                    help="llama/mistral: rope_theta + rope_scaling (legacy, as on the Hub) or rope_parameters")
    ap.add_argument("--llama-rope", default="llama3", choices=["default", "linear", "llama3"])
    ap.add_argument("--conv-bias", action="store_true", help="lfm2: conv_bias true (biases on in_proj, conv, "
                                                                "out_proj of the conv layers)")
    ap.add_argument("--mamba-norm", default="after", choices=["after", "before", "none"],
                    help="falcon_h1: the gated RMSNorm of the Mamba2 branch (after the gate, before it, none)")
    ap.add_argument("--biases", action="store_true", help="falcon_h1: every optional bias, mamba_d_ssm null")
    ap.add_argument("--vocab", type=int, help="gpt2: this vocabulary size instead of the size's (50257: GPT-2's "
                                                  "own, for tokenizer.json tests)")
    ap.add_argument("--gpt2-names", default="gpt2lmhead", choices=["gpt2lmhead", "gpt2model"],
                    help="gpt2: tensor names as GPT2LMHeadModel saves them ('transformer.' prefix) or as "
                         "GPT2Model does (no prefix, e.g. openai-community/gpt2's model.safetensors)")
    args = ap.parse_args(argv)
    if args.published:
        params = write_published(args.outdir, args.published, args.seed, args.header_only)
        print(f"{args.outdir}: {args.published}, {params:,} parameters")
        return 0
    if not args.arch:
        ap.error("give --arch or --published")

    tie = {"yes": True, "no": False}.get(args.tie, args.arch in ("mamba", "gpt2", "gemma2", "lfm2"))
    big = args.size == "mamba130m"
    g = Gen(args.seed)
    if args.arch in ("mamba", "falcon_mamba"):
        cfg = make_mamba(g, args.arch, big, tie)
    elif args.arch == "mamba2":
        cfg = make_mamba2(g, big, tie)
    elif args.arch in ("llama", "mistral"):
        cfg = make_llama(g, args.arch, big, tie, args.rope_format, args.llama_rope)
    elif args.arch == "gpt2":
        cfg = make_gpt2(g, big, tie, args.vocab)
        if args.gpt2_names == "gpt2model":
            g.t = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in g.t.items()}
    elif args.arch in ("gpt_neox", "gpt_neox_sequential"):
        cfg = make_gpt_neox(g, big, tie, parallel=args.arch == "gpt_neox")
    elif args.arch == "phi":
        cfg = make_phi(g, big, tie)
    elif args.arch in ("qwen2", "qwen3"):
        cfg = make_qwen(g, args.arch, big, tie)
    elif args.arch == "gemma2":
        cfg = make_gemma2(g, big, tie)
    elif args.arch == "lfm2":
        cfg = make_lfm2(g, big, tie, args.conv_bias)
    elif args.arch == "jamba":
        cfg = make_jamba(g, big, tie)
    elif args.arch == "falcon_h1":
        cfg = make_falcon_h1(g, big, tie, args.mamba_norm, args.biases)
    else:
        cfg = make_gla(g, big, tie)
    cfg["torch_dtype"] = TORCH_DTYPE_NAME[args.dtype]

    os.makedirs(args.outdir, exist_ok=True)
    for old in os.listdir(args.outdir):  # a re-run must not leave a stale index or shards behind
        if old.endswith(".safetensors") or old == "model.safetensors.index.json":
            os.unlink(os.path.join(args.outdir, old))
    with open(os.path.join(args.outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)  # allow_nan: inf is written as Infinity, as transformers does
        f.write("\n")
    names = sorted(g.t)
    if args.sharded:
        n = max(1, min(args.shards, len(names)))
        parts = [list(p) for p in np.array_split(np.array(names, dtype=object), n)]
        wm, total = {}, 0
        for k, part in enumerate(parts):
            fn = f"model-{k + 1:05d}-of-{n:05d}.safetensors"
            total += write_safetensors(os.path.join(args.outdir, fn), {x: g.t[x] for x in part}, args.dtype)
            wm.update({x: fn for x in part})
        with open(os.path.join(args.outdir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
            f.write("\n")
    else:
        write_safetensors(os.path.join(args.outdir, "model.safetensors"), g.t, args.dtype)
    print(args.outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
