#!/usr/bin/python3
"""Random checkpoints in the upstream Hugging Face layout, for testing `ess analyze`.

    make_checkpoints.py OUTDIR --arch mamba|falcon_mamba|mamba2|llama|mistral|gla [--seed S]
        [--size tiny|mamba130m] [--dtype F32|F16|BF16|F64] [--sharded [--shards N]]
        [--tie auto|yes|no] [--rope-format legacy|v5] [--llama-rope default|linear|llama3]
    make_checkpoints.py OUTDIR --published mamba-130m|llama-3.2-1b [--seed S] [--header-only]

Writes OUTDIR/config.json and OUTDIR/model.safetensors (or model-0000k-of-0000N.safetensors plus
model.safetensors.index.json with --sharded). Tensor names and config.json fields are those of
Hugging Face transformers' MambaForCausalLM, FalconMambaForCausalLM, Mamba2ForCausalLM,
LlamaForCausalLM, MistralForCausalLM and flash-linear-attention's GLAForCausalLM (see README.md).
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--arch", choices=["mamba", "falcon_mamba", "mamba2", "llama", "mistral", "gla"])
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
                    help="tie lm_head to the embeddings (auto: the upstream default: mamba yes, others no)")
    ap.add_argument("--rope-format", default="legacy", choices=["legacy", "v5"],
                    help="llama/mistral: rope_theta + rope_scaling (legacy, as on the Hub) or rope_parameters")
    ap.add_argument("--llama-rope", default="llama3", choices=["default", "linear", "llama3"])
    args = ap.parse_args(argv)
    if args.published:
        params = write_published(args.outdir, args.published, args.seed, args.header_only)
        print(f"{args.outdir}: {args.published}, {params:,} parameters")
        return 0
    if not args.arch:
        ap.error("give --arch or --published")

    tie = {"yes": True, "no": False}.get(args.tie, args.arch == "mamba")
    big = args.size == "mamba130m"
    g = Gen(args.seed)
    if args.arch in ("mamba", "falcon_mamba"):
        cfg = make_mamba(g, args.arch, big, tie)
    elif args.arch == "mamba2":
        cfg = make_mamba2(g, big, tie)
    elif args.arch in ("llama", "mistral"):
        cfg = make_llama(g, args.arch, big, tie, args.rope_format, args.llama_rope)
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
