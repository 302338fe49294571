"""Random-weight checkpoints with the exact published config.json and file layout of real models
(`make_checkpoints.py --published NAME`), for measuring `ess inspect` / `ess analyze` at real
sizes (docs/checkpoints.md, "Real shapes"). Only shapes and names are real; the weights are random.

A model of 1B parameters does not fit in memory as float64 arrays, so tensors are described lazily
(name, shape, initializer) and streamed into the safetensors files row block by row block; each
tensor draws from its own generator seeded by (seed, crc32(name)), so the values do not depend on
the order of writing. Configs: the config.json of each Hugging Face model repository, field for
field (values checked against several public copies); layouts: the repository's weight files.
"""
import json
import math
import os
import struct
import zlib

import numpy as np

from st_io import DTYPES, encode

# --- published configs ---------------------------------------------------------------------------

MAMBA_130M = {  # state-spaces/mamba-130m-hf (transformers conversion; tie_word_embeddings not stored: true)
    "architectures": ["MambaForCausalLM"], "bos_token_id": 0, "conv_kernel": 4, "d_inner": 1536,
    "d_model": 768, "eos_token_id": 0, "expand": 2, "fused_add_norm": True, "hidden_act": "silu",
    "hidden_size": 768, "initializer_range": 0.1, "intermediate_size": 1536, "layer_norm_epsilon": 1e-05,
    "model_type": "mamba", "n_layer": 24, "num_hidden_layers": 24, "pad_token_id": 0,
    "pad_vocab_size_multiple": 8, "rescale_prenorm_residual": False, "residual_in_fp32": True, "rms_norm": True,
    "ssm_cfg": {}, "state_size": 16, "time_step_floor": 0.0001, "time_step_init_scheme": "random",
    "time_step_max": 0.1, "time_step_min": 0.001, "time_step_rank": 48, "time_step_scale": 1.0,
    "torch_dtype": "float32", "transformers_version": "4.39.0.dev0", "use_bias": False, "use_cache": True,
    "use_conv_bias": True, "vocab_size": 50280,
}

# state-spaces/mamba-2.8b-hf: the same transformers conversion at 64 layers × D 2560 (d_inner 5120,
# time_step_rank ⌈2560 / 16⌉ = 160); 2,768,345,600 parameters in F32 (11.1 GB), saved in three shards
# (transformers' default 5 GB shard size). Which tensor sits in which shard follows our own split
# (names in order, evenly), not the upstream file's.
MAMBA_28B = dict(MAMBA_130M, d_inner=5120, d_model=2560, hidden_size=2560, intermediate_size=5120, n_layer=64,
                 num_hidden_layers=64, time_step_rank=160)

LLAMA_32_1B = {  # meta-llama/Llama-3.2-1B
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 128256,
}

QWEN25_05B = {  # Qwen/Qwen2.5-0.5B
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
    "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24, "model_type": "qwen2",
    "num_attention_heads": 14, "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1", "use_cache": True, "use_mrope": False, "use_sliding_window": False,
    "vocab_size": 151936,
}

PYTHIA_160M = {  # EleutherAI/pythia-160m
    "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0, "hidden_act": "gelu",
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 2048, "model_type": "gpt_neox", "num_attention_heads": 12, "num_hidden_layers": 12,
    "rotary_emb_base": 10000, "rotary_pct": 0.25, "tie_word_embeddings": False, "torch_dtype": "float16",
    "transformers_version": "4.24.0", "use_cache": True, "use_parallel_residual": True, "vocab_size": 50304,
}

LFM2_350M = {  # LiquidAI/LFM2-350M (the release config, transformers 4.54.0.dev0: full_attn_idxs, no layer_types)
    "architectures": ["Lfm2ForCausalLM"], "block_auto_adjust_ff_dim": True, "block_dim": 1024, "block_ff_dim": 6656,
    "block_ffn_dim_multiplier": 1.0, "block_mlp_init_scale": 1.0, "block_multiple_of": 256, "block_norm_eps": 1e-05,
    "block_out_init_scale": 1.0, "block_use_swiglu": True, "block_use_xavier_init": True, "bos_token_id": 1,
    "conv_L_cache": 3, "conv_bias": False, "conv_dim": 1024, "conv_dim_out": 1024, "conv_use_xavier_init": True,
    "eos_token_id": 7, "full_attn_idxs": [2, 5, 8, 10, 12, 14], "hidden_size": 1024, "initializer_range": 0.02,
    "max_position_embeddings": 128000, "model_type": "lfm2", "norm_eps": 1e-05, "num_attention_heads": 16,
    "num_heads": 16, "num_hidden_layers": 16, "num_key_value_heads": 8, "pad_token_id": 0, "rope_theta": 1000000.0,
    "torch_dtype": "bfloat16", "transformers_version": "4.54.0.dev0", "use_cache": True, "use_pos_enc": True,
    "vocab_size": 65536,
}


class Lazy:
    """One tensor to be generated: shape and initializer kind."""

    def __init__(self, shape, kind, scale=1.0):
        self.shape, self.kind, self.scale = tuple(int(s) for s in shape), kind, scale

    def rows(self, rng, r0, r1):
        """Rows r0..r1 of the tensor (dim 0), float64, drawn in order from rng."""
        shape = (r1 - r0,) + self.shape[1:]
        if self.kind == "linear":  # N(0, 1/in) · scale, as nn.Linear-like init
            return rng.standard_normal(shape) * (self.scale / math.sqrt(int(np.prod(self.shape[1:]))))
        if self.kind == "normal":
            return rng.standard_normal(shape) * self.scale
        if self.kind == "norm":
            return 1.0 + 0.1 * rng.standard_normal(shape)
        if self.kind == "dt_bias":  # softplus^{-1}(dt), dt log-uniform in [1e-3, 1e-1]
            dt = np.exp(rng.uniform(math.log(1e-3), math.log(1e-1), shape))
            return dt + np.log(-np.expm1(-dt))
        if self.kind == "A_log":  # S4D-real: log(1..N) per channel, jittered
            N = self.shape[1]
            return np.log(np.tile(np.arange(1, N + 1, dtype=float), (shape[0], 1))) + 0.05 * rng.standard_normal(shape)
        if self.kind == "ones_jitter":
            return 1.0 + 0.1 * rng.standard_normal(shape)
        raise ValueError(self.kind)


def mamba_tensors(c):
    V, D, N, K, nl = c["vocab_size"], c["hidden_size"], c["state_size"], c["conv_kernel"], c["num_hidden_layers"]
    E, R = c["intermediate_size"], c["time_step_rank"]
    t = {"backbone.embeddings.weight": Lazy((V, D), "normal"), "backbone.norm_f.weight": Lazy((D,), "norm")}
    for l in range(nl):
        p = f"backbone.layers.{l}."
        t.update({p + "norm.weight": Lazy((D,), "norm"),
                  p + "mixer.in_proj.weight": Lazy((2 * E, D), "linear"),
                  p + "mixer.conv1d.weight": Lazy((E, 1, K), "normal", 1 / math.sqrt(K)),
                  p + "mixer.conv1d.bias": Lazy((E,), "normal", 0.1),
                  p + "mixer.x_proj.weight": Lazy((R + 2 * N, E), "linear"),
                  p + "mixer.dt_proj.weight": Lazy((E, R), "linear"),
                  p + "mixer.dt_proj.bias": Lazy((E,), "dt_bias"),
                  p + "mixer.A_log": Lazy((E, N), "A_log"),
                  p + "mixer.D": Lazy((E,), "ones_jitter"),
                  p + "mixer.out_proj.weight": Lazy((D, E), "linear")})
    return t


def llama_tensors(c):
    V, D, I, nl = c["vocab_size"], c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    H, Hkv = c["num_attention_heads"], c["num_key_value_heads"]
    hd = c.get("head_dim") or D // H
    t = {"model.embed_tokens.weight": Lazy((V, D), "normal"), "model.norm.weight": Lazy((D,), "norm")}
    for l in range(nl):
        p = f"model.layers.{l}."
        t.update({p + "input_layernorm.weight": Lazy((D,), "norm"),
                  p + "post_attention_layernorm.weight": Lazy((D,), "norm"),
                  p + "self_attn.q_proj.weight": Lazy((H * hd, D), "linear", 2.0),
                  p + "self_attn.k_proj.weight": Lazy((Hkv * hd, D), "linear", 2.0),
                  p + "self_attn.v_proj.weight": Lazy((Hkv * hd, D), "linear"),
                  p + "self_attn.o_proj.weight": Lazy((D, H * hd), "linear"),
                  p + "mlp.gate_proj.weight": Lazy((I, D), "linear"),
                  p + "mlp.up_proj.weight": Lazy((I, D), "linear"),
                  p + "mlp.down_proj.weight": Lazy((D, I), "linear")})
    if not c.get("tie_word_embeddings", False):
        t["lm_head.weight"] = Lazy((V, D), "linear")
    return t


def qwen2_tensors(c):
    """Llama's tensors plus the q/k/v biases of Qwen2."""
    t = llama_tensors(c)
    D, H, Hkv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd = D // H
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}.self_attn."
        t.update({p + "q_proj.bias": Lazy((H * hd,), "normal", 0.5), p + "k_proj.bias": Lazy((Hkv * hd,), "normal", 0.5),
                  p + "v_proj.bias": Lazy((Hkv * hd,), "normal", 0.1)})
    return t


def gpt_neox_tensors(c):
    """GPT-NeoX weights (the causal-mask and rotary buffers of old checkpoints are not weights: left out)."""
    V, D, I, nl = c["vocab_size"], c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    t = {"gpt_neox.embed_in.weight": Lazy((V, D), "normal"), "gpt_neox.final_layer_norm.weight": Lazy((D,), "norm"),
         "gpt_neox.final_layer_norm.bias": Lazy((D,), "normal", 0.1)}
    for l in range(nl):
        p = f"gpt_neox.layers.{l}."
        for n in ("input_layernorm", "post_attention_layernorm"):
            t.update({p + n + ".weight": Lazy((D,), "norm"), p + n + ".bias": Lazy((D,), "normal", 0.1)})
        t.update({p + "attention.query_key_value.weight": Lazy((3 * D, D), "linear", 2.0),
                  p + "attention.query_key_value.bias": Lazy((3 * D,), "normal", 0.1),
                  p + "attention.dense.weight": Lazy((D, D), "linear"),
                  p + "attention.dense.bias": Lazy((D,), "normal", 0.1),
                  p + "mlp.dense_h_to_4h.weight": Lazy((I, D), "linear"),
                  p + "mlp.dense_h_to_4h.bias": Lazy((I,), "normal", 0.1),
                  p + "mlp.dense_4h_to_h.weight": Lazy((D, I), "linear"),
                  p + "mlp.dense_4h_to_h.bias": Lazy((D,), "normal", 0.1)})
    if not c.get("tie_word_embeddings", False):
        t["embed_out.weight"] = Lazy((V, D), "linear")
    return t


def lfm2_tensors(c):
    V, D, nl = c["vocab_size"], c["hidden_size"], c["num_hidden_layers"]
    H, Hkv, K = c["num_attention_heads"], c["num_key_value_heads"], c["conv_L_cache"]
    hd = D // H
    I = int(2 * c["block_ff_dim"] / 3)  # Lfm2MLP: auto-adjusted, times the multiplier 1.0, rounded up
    I = c["block_multiple_of"] * ((int(c["block_ffn_dim_multiplier"] * I) + c["block_multiple_of"] - 1)
                                  // c["block_multiple_of"])
    t = {"model.embed_tokens.weight": Lazy((V, D), "normal"), "model.embedding_norm.weight": Lazy((D,), "norm")}
    for l in range(nl):
        p = f"model.layers.{l}."
        t.update({p + "operator_norm.weight": Lazy((D,), "norm"), p + "ffn_norm.weight": Lazy((D,), "norm"),
                  p + "feed_forward.w1.weight": Lazy((I, D), "linear"),
                  p + "feed_forward.w3.weight": Lazy((I, D), "linear"),
                  p + "feed_forward.w2.weight": Lazy((D, I), "linear")})
        if l in c["full_attn_idxs"]:
            a = p + "self_attn."
            t.update({a + "q_proj.weight": Lazy((H * hd, D), "linear"), a + "k_proj.weight": Lazy((Hkv * hd, D), "linear"),
                      a + "v_proj.weight": Lazy((Hkv * hd, D), "linear"), a + "out_proj.weight": Lazy((D, H * hd), "linear"),
                      a + "q_layernorm.weight": Lazy((hd,), "norm"), a + "k_layernorm.weight": Lazy((hd,), "norm")})
        else:
            t.update({p + "conv.in_proj.weight": Lazy((3 * D, D), "linear"),
                      p + "conv.conv.weight": Lazy((D, 1, K), "normal", 1 / math.sqrt(K)),
                      p + "conv.out_proj.weight": Lazy((D, D), "linear")})
    return t


# name -> (config, tensors(config), safetensors dtype, weight files: [] = one model.safetensors,
#          else the shard file names in order, tensors spread over them in name order)
PUBLISHED = {
    "mamba-130m": (MAMBA_130M, mamba_tensors, "F32", []),
    "mamba-2.8b": (MAMBA_28B, mamba_tensors, "F32",
                   [f"model-0000{k}-of-00003.safetensors" for k in (1, 2, 3)]),
    "llama-3.2-1b": (LLAMA_32_1B, llama_tensors, "BF16", []),
    "qwen2.5-0.5b": (QWEN25_05B, qwen2_tensors, "BF16", []),
    "pythia-160m": (PYTHIA_160M, gpt_neox_tensors, "F16", []),
    "lfm2-350m": (LFM2_350M, lfm2_tensors, "BF16", []),
}


def write_streaming(path, tensors, dtype, seed, rows_per_block=4096, header_only=False):
    """safetensors file of the Lazy tensors (sorted by name), generated block by block; with
    header_only the data buffer is left as a hole (a sparse file of zeros: headers, shapes and
    layout are real, for `ess inspect`, in no time and no disk space)."""
    header, offset = {}, 0
    item = DTYPES[dtype].itemsize
    for name in sorted(tensors):
        n = int(np.prod(tensors[name].shape)) * item
        header[name] = {"dtype": dtype, "shape": list(tensors[name].shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        if header_only:
            f.truncate(8 + len(h) + offset)
            names = []
        else:
            names = sorted(tensors)
        for name in names:
            lz = tensors[name]
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            for r0 in range(0, lz.shape[0], rows_per_block):
                f.write(encode(lz.rows(rng, r0, min(lz.shape[0], r0 + rows_per_block)), dtype))
    os.replace(tmp, path)
    return offset


def write_published(outdir, name, seed, header_only=False):
    cfg, make, dtype, shards = PUBLISHED[name]
    tensors = make(cfg)
    os.makedirs(outdir, exist_ok=True)
    for old in os.listdir(outdir):
        if old.endswith(".safetensors") or old == "model.safetensors.index.json":
            os.unlink(os.path.join(outdir, old))
    with open(os.path.join(outdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    names = sorted(tensors)
    if not shards:
        write_streaming(os.path.join(outdir, "model.safetensors"), tensors, dtype, seed, header_only=header_only)
    else:
        parts = np.array_split(np.array(names, dtype=object), len(shards))
        wm, total = {}, 0
        for fn, part in zip(shards, parts):
            total += write_streaming(os.path.join(outdir, fn), {x: tensors[x] for x in part}, dtype, seed,
                                     header_only=header_only)
            wm.update({x: fn for x in part})
        with open(os.path.join(outdir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
            f.write("\n")
    params = sum(int(np.prod(t.shape)) for t in tensors.values())
    return params
