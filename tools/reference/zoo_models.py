"""Trainable float32 PyTorch models in the Hugging Face layouts `ess analyze` reads, for the zoo.

Every model keeps its parameters under the exact Hugging Face tensor names (tools/reference/
README.md is the spec) and computes the same forward pass as reference_forward.py (float64,
sequential recurrences), written here for training speed: the GLA scan is chunked (exact
intra-chunk decays, every exponent ≤ 0), Mamba2 and the no-decay linear attention use the
quadratic (attention-like) form, Mamba a vectorised sequential scan.

Families (`family` field of a zoo entry):
  sa     LlamaForCausalLM (softmax attention, RoPE)
  gla    GLAForCausalLM (flash-linear-attention; no short convolution), TSS = head key dim
  gla0   GLAForCausalLM with clamp_min = 0: log-decay clamped to 0, i.e. linear attention
         without any decay or token shift (cannot bind a key to the next token: a control)
  la     Mamba2ForCausalLM with A_log fixed at -30 (decay exp(-dt e^-30) = 1 to ~1e-12): linear
         attention with Mamba2's short convolution, dt-scaled keys and gated norm; TSS = state_size
  mamba  MambaForCausalLM (selective scan per channel), TSS = state_size
  mamba2 Mamba2ForCausalLM (scalar decay per head), TSS = state_size

MQAR batches follow models/tokens.cpp make_mqar (the distribution `ess analyze --mqar` draws).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

FAMILIES = ("sa", "gla", "gla0", "la", "mamba", "mamba2")
LA_A_LOG = -30.0  # the "la" family's fixed A_log
GLA_CLAMP_MIN = -4.0  # the "gla" family's clamp_min: per-step decay ≥ e^-4 (bounds the chunked scan)


# ---------------------------------------------------------------------------------------------
# MQAR (same layout and distribution as models/tokens.cpp make_mqar)


def mqar_batch(n, kv, length, vocab, gen):
    """(tokens [n, length], targets [n, length] with -100 where there is no query).
    Keys: kv distinct ids from [1, V/2); values uniform from [V/2, V); then query pairs
    'key value' drawn uniformly (with replacement) from the context; a final odd position holds a
    key without target. The target at a query key's position is its value."""
    half = vocab // 2
    keys = torch.rand(n, half - 1, generator=gen).argsort(dim=1)[:, :kv] + 1
    vals = torch.randint(half, vocab, (n, kv), generator=gen)
    ctx = torch.stack([keys, vals], -1).reshape(n, 2 * kv)
    nq = (length - 2 * kv) // 2
    pick = torch.randint(0, kv, (n, nq), generator=gen)
    qk, qv = keys.gather(1, pick), vals.gather(1, pick)
    parts = [ctx, torch.stack([qk, qv], -1).reshape(n, 2 * nq)]
    if 2 * kv + 2 * nq < length:
        parts.append(keys.gather(1, torch.randint(0, kv, (n, 1), generator=gen)))
    seq = torch.cat(parts, 1)
    tgt = torch.full_like(seq, -100)
    tgt[:, 2 * kv:2 * kv + 2 * nq:2] = qv
    return seq, tgt


# ---------------------------------------------------------------------------------------------
# building blocks


def rms(x, w=None, eps=1e-6):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if w is None else y * w


def causal_conv(x, weight, bias):
    """x [B, L, C], weight [C, 1, K] -> depthwise causal conv [B, L, C] (as reference_forward)."""
    K = weight.shape[-1]
    y = F.conv1d(F.pad(x.transpose(1, 2), (K - 1, 0)), weight, bias, groups=x.shape[-1])
    return y.transpose(1, 2)


def chunked_gla(q, k, v, g, chunk=16, floor=None):
    """o_t = S_t^T q_t, S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T.  q, k, g [B, H, L, dk] (g ≤ 0),
    v [B, H, L, dv] -> o [B, H, L, dv], chunked: the state is carried across chunks.
    Inside a chunk, with `floor` (a lower bound on g, the config's clamp_min) and chunk·floor ≥ −64,
    the decays factor as (q_i e^{G_i})·(k_j e^{−G_j}) (one matmul; every factor < e^64); otherwise
    they are formed exactly per key dimension (slower, exponents ≤ 0)."""
    B, H, L, dk = q.shape
    dv = v.shape[-1]
    pad = (-L) % chunk
    if pad:
        q, k, v, g = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v, g))
    n = (L + pad) // chunk
    q, k, g = (t.reshape(B, H, n, chunk, dk) for t in (q, k, g))
    v = v.reshape(B, H, n, chunk, dv)
    G = g.cumsum(3)  # inclusive, within the chunk
    causal = torch.ones(chunk, chunk, dtype=torch.bool).tril()
    qd = q * G.exp()  # decay from the chunk start to i
    if floor is not None and chunk * floor >= -64:
        A = (qd @ (k * (-G).exp()).transpose(-1, -2)).masked_fill(~causal, 0.0)
    else:
        diff = (G[..., :, None, :] - G[..., None, :, :]).masked_fill(~causal[:, :, None], float("-inf"))
        A = (q[..., :, None, :] * k[..., None, :, :] * diff.exp()).sum(-1)  # [B, H, n, c, c]
    o = A @ v
    Glast = G[..., -1:, :]  # [B, H, n, 1, dk]
    kd = k * (Glast - G).exp()  # decay from j to the chunk end
    S = q.new_zeros(B, H, dk, dv)
    inter = []
    for q_c, k_c, v_c, g_c in zip(qd.unbind(2), kd.unbind(2), v.unbind(2), Glast.unbind(2)):
        inter.append(q_c @ S)
        S = g_c[:, :, 0, :, None].exp() * S + k_c.transpose(-1, -2) @ v_c
    o = o + torch.stack(inter, 2)
    return o.reshape(B, H, n * chunk, dv)[:, :, :L]


def scalar_decay_attention(q, k, v, a, chunk=32):
    """o_i = Σ_{j≤i} (q_i·k_j) exp(Σ_{m=j+1..i} a_m) v_j (a scan with one decay per head), chunked:
    exact decays inside a chunk (exponents ≤ 0), the state S [N, P] carried across chunks.
    q, k [B, H, L, N]; v [B, H, L, P]; a [B, H, L] (≤ 0) -> [B, H, L, P]."""
    B, H, L, N = q.shape
    P = v.shape[-1]
    pad = (-L) % chunk
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        a = F.pad(a, (0, pad))
    n = (L + pad) // chunk
    q, k, v = q.reshape(B, H, n, chunk, N), k.reshape(B, H, n, chunk, N), v.reshape(B, H, n, chunk, P)
    G = a.reshape(B, H, n, chunk).cumsum(-1)
    causal = torch.ones(chunk, chunk, dtype=torch.bool).tril()
    decay = (G[..., :, None] - G[..., None, :]).masked_fill(~causal, float("-inf")).exp()
    o = ((q @ k.transpose(-1, -2)) * decay) @ v
    qd = q * G.exp()[..., None]
    Glast = G[..., -1:]
    kd = k * (Glast - G).exp()[..., None]
    S = q.new_zeros(B, H, N, P)
    inter = []
    for q_c, k_c, v_c, g_c in zip(qd.unbind(2), kd.unbind(2), v.unbind(2), Glast.unbind(2)):
        inter.append(q_c @ S)
        S = g_c[:, :, :, None].exp() * S + k_c.transpose(-1, -2) @ v_c
    o = o + torch.stack(inter, 2)
    return o.reshape(B, H, n * chunk, P)[:, :, :L]


# ---------------------------------------------------------------------------------------------
# the model: a dict of named parameters plus a forward pass per architecture


class HFModel(torch.nn.Module):
    """Parameters under Hugging Face names (dots replaced by '__' inside the ParameterDict)."""

    def __init__(self, cfg, tensors, frozen=()):
        super().__init__()
        self.cfg = cfg
        self.p = torch.nn.ParameterDict({n.replace(".", "__"): torch.nn.Parameter(
            torch.as_tensor(np.asarray(t), dtype=torch.float32), requires_grad=n not in frozen)
            for n, t in tensors.items()})
        self.arch = cfg["architectures"][0]

    def w(self, name):
        return self.p[name.replace(".", "__")]

    def has(self, name):
        return name.replace(".", "__") in self.p

    def named_hf_tensors(self):
        return {n.replace("__", "."): t.detach().double().numpy() for n, t in self.p.items()}

    def forward(self, tokens, capture=None):
        """logits [B, L, V]. capture: optional list; each mixer appends (name, mixer output)."""
        return {"LlamaForCausalLM": self.llama, "GLAForCausalLM": self.gla, "MambaForCausalLM": self.mamba,
                "Mamba2ForCausalLM": self.mamba2}[self.arch](tokens, capture)

    def head(self, h, norm, emb):
        name = "lm_head.weight" if self.has("lm_head.weight") else emb
        return rms(h, self.w(norm), self.eps) @ self.w(name).T

    # --- Llama
    def llama(self, tok, capture):
        c = self.cfg
        H, hd, nl = c["num_attention_heads"], c["head_dim"], c["num_hidden_layers"]
        self.eps = c["rms_norm_eps"]
        B, L = tok.shape
        x = self.w("model.embed_tokens.weight")[tok]
        inv = 1.0 / c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.arange(L, dtype=torch.float64)[:, None] * inv[None]
        cos, sin = torch.cat([ang, ang], -1).cos().float(), torch.cat([ang, ang], -1).sin().float()
        rot = lambda t: t * cos + torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1) * sin  # noqa: E731
        mask = torch.ones(L, L, dtype=torch.bool).tril()
        for l in range(nl):
            p = f"model.layers.{l}."
            u = rms(x, self.w(p + "input_layernorm.weight"), self.eps)
            q = rot((u @ self.w(p + "self_attn.q_proj.weight").T).view(B, L, H, hd).transpose(1, 2))
            k = rot((u @ self.w(p + "self_attn.k_proj.weight").T).view(B, L, H, hd).transpose(1, 2))
            v = (u @ self.w(p + "self_attn.v_proj.weight").T).view(B, L, H, hd).transpose(1, 2)
            s = (q @ k.transpose(-1, -2)) * hd ** -0.5
            a = torch.softmax(s.masked_fill(~mask, float("-inf")), -1)
            if getattr(self, "attention_hook", None) is not None:  # plan_check.py: a sparse student of layer l
                a = self.attention_hook(l, s.masked_fill(~mask, float("-inf")), a)
            o = a @ v
            out = o.transpose(1, 2).reshape(B, L, H * hd) @ self.w(p + "self_attn.o_proj.weight").T
            if capture is not None:
                capture.append((f"model.layers.{l}.self_attn", out))
            x = x + out
            u = rms(x, self.w(p + "post_attention_layernorm.weight"), self.eps)
            x = x + (F.silu(u @ self.w(p + "mlp.gate_proj.weight").T) * (u @ self.w(p + "mlp.up_proj.weight").T)) \
                @ self.w(p + "mlp.down_proj.weight").T
        return self.head(x, "model.norm.weight", "model.embed_tokens.weight")

    # --- GLA
    def gla_mixer(self, l, u, B, L):
        """The GLA attention of layer l on normalised input u [B, L, D] -> [B, L, D]."""
        c = self.cfg
        H, D = c["num_heads"], c["hidden_size"]
        hk, hv = int(D * c["expand_k"]) // H, int(D * c["expand_v"]) // H
        a = f"model.layers.{l}.attn."
        heads = lambda t, d: t.reshape(B, L, H, d).transpose(1, 2)  # noqa: E731
        q, k, v = (u @ self.w(a + f"{n}_proj.weight").T for n in "qkv")
        if c.get("use_short_conv"):  # fla ShortConvolution: causal depthwise conv, no bias, then SiLU
            q, k, v = (F.silu(causal_conv(t, self.w(a + f"{n}_conv1d.weight"), None)) for n, t in zip("qkv", (q, k, v)))
        q, k, v = heads(q, hk), heads(k, hk), heads(v, hv)
        gk = (u @ self.w(a + "gk_proj.0.weight").T) @ self.w(a + "gk_proj.1.weight").T + self.w(a + "gk_proj.1.bias")
        gk = F.logsigmoid(heads(gk, hk)) / 16
        if c.get("clamp_min") is not None:
            gk = torch.clamp_min(gk, c["clamp_min"])
        o = chunked_gla(q * hk ** -0.5, k, v, gk, floor=c.get("clamp_min"))
        o = rms(o, self.w(a + "g_norm_swish_gate.weight"), self.eps) * F.silu(heads(u @ self.w(a + "g_proj.weight").T, hv))
        return o.transpose(1, 2).reshape(B, L, H * hv) @ self.w(a + "o_proj.weight").T

    def gla(self, tok, capture):
        c = self.cfg
        self.eps = c["norm_eps"]
        B, L = tok.shape
        x = self.w("model.embeddings.weight")[tok]
        for l in range(c["num_hidden_layers"]):
            p = f"model.layers.{l}."
            out = self.gla_mixer(l, rms(x, self.w(p + "attn_norm.weight"), self.eps), B, L)
            if capture is not None:
                capture.append((f"model.layers.{l}.attn", out))
            x = x + out
            u = rms(x, self.w(p + "mlp_norm.weight"), self.eps)
            x = x + (F.silu(u @ self.w(p + "mlp.gate_proj.weight").T) * (u @ self.w(p + "mlp.up_proj.weight").T)) \
                @ self.w(p + "mlp.down_proj.weight").T
        return self.head(x, "model.norm.weight", "model.embeddings.weight")

    # --- Mamba
    def mamba(self, tok, capture):
        c = self.cfg
        D, N, E, R = c["hidden_size"], c["state_size"], c["intermediate_size"], c["time_step_rank"]
        self.eps = c["layer_norm_epsilon"]
        B, L = tok.shape
        x = self.w("backbone.embeddings.weight")[tok]
        for l in range(c["num_hidden_layers"]):
            p = f"backbone.layers.{l}.mixer."
            u = rms(x, self.w(f"backbone.layers.{l}.norm.weight"), self.eps)
            xz = u @ self.w(p + "in_proj.weight").T
            xs, z = xz[..., :E], xz[..., E:]
            xs = F.silu(causal_conv(xs, self.w(p + "conv1d.weight"), self.w(p + "conv1d.bias")))
            dbc = xs @ self.w(p + "x_proj.weight").T
            dtr, Bm, Cm = dbc[..., :R], dbc[..., R:R + N], dbc[..., R + N:]
            dt = F.softplus(dtr @ self.w(p + "dt_proj.weight").T + self.w(p + "dt_proj.bias"))  # [B, L, E]
            A = -self.w(p + "A_log").exp()  # [E, N]
            dA = (dt[..., None] * A).exp()  # [B, L, E, N]
            dBx = (dt * xs)[..., None] * Bm[:, :, None, :]
            s = xs.new_zeros(B, E, N)
            states = []
            for a_t, b_t in zip(dA.unbind(1), dBx.unbind(1)):  # unbind: one backward for all steps
                s = a_t * s + b_t
                states.append(s)
            y = (torch.stack(states, 1) * Cm[:, :, None, :]).sum(-1)  # [B, L, E]
            y = (y + xs * self.w(p + "D")) * F.silu(z)
            out = y @ self.w(p + "out_proj.weight").T
            if capture is not None:
                capture.append((f"backbone.layers.{l}.mixer", out))
            x = x + out
        return self.head(x, "backbone.norm_f.weight", "backbone.embeddings.weight")

    # --- Mamba2 (and the no-decay linear attention)
    def mamba2(self, tok, capture):
        c = self.cfg
        D, N, H, P, G = c["hidden_size"], c["state_size"], c["num_heads"], c["head_dim"], c["n_groups"]
        E = H * P
        self.eps = c["layer_norm_epsilon"]
        conv_dim = E + 2 * G * N
        B, L = tok.shape
        x = self.w("backbone.embeddings.weight")[tok]
        grp = torch.arange(H) // (H // G)
        for l in range(c["num_hidden_layers"]):
            p = f"backbone.layers.{l}.mixer."
            u = rms(x, self.w(f"backbone.layers.{l}.norm.weight"), self.eps)
            proj = u @ self.w(p + "in_proj.weight").T
            gate, xBC, dt = proj[..., :E], proj[..., E:E + conv_dim], proj[..., E + conv_dim:]
            xBC = F.silu(causal_conv(xBC, self.w(p + "conv1d.weight"), self.w(p + "conv1d.bias")))
            xs, Bm, Cm = xBC[..., :E], xBC[..., E:E + G * N], xBC[..., E + G * N:]
            dt = F.softplus(dt + self.w(p + "dt_bias"))  # [B, L, H]; time_step_limit (0, inf)
            A = -self.w(p + "A_log").exp()  # [H]
            xh = xs.reshape(B, L, H, P).transpose(1, 2)  # [B, H, L, P]
            Bh = Bm.reshape(B, L, G, N)[:, :, grp].transpose(1, 2)  # [B, H, L, N]
            Ch = Cm.reshape(B, L, G, N)[:, :, grp].transpose(1, 2)
            dth = dt.transpose(1, 2)  # [B, H, L]
            y = scalar_decay_attention(Ch, Bh * dth[..., None], xh, dth * A[:, None])  # [B, H, L, P]
            y = (y + xh * self.w(p + "D")[:, None, None]).transpose(1, 2).reshape(B, L, E)
            y = rms(y * F.silu(gate), self.w(p + "norm.weight"), self.eps)
            out = y @ self.w(p + "out_proj.weight").T
            if capture is not None:
                capture.append((f"backbone.layers.{l}.mixer", out))
            x = x + out
        return self.head(x, "backbone.norm_f.weight", "backbone.embeddings.weight")


# ---------------------------------------------------------------------------------------------
# configs and initial weights


def _lin(rng, out_f, in_f, scale=1.0):
    return rng.standard_normal((out_f, in_f)) * (scale / math.sqrt(in_f))


def _dt_bias(rng, n, lo=1e-3, hi=1e-1):
    dt = np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    return dt + np.log(-np.expm1(-dt))  # softplus^{-1}(dt)


def build(family, vocab, d_model, state, seed, layers=2, heads=None, mlp=None, note=""):
    """(config dict, {hf name: numpy array}, frozen tensor names) for a freshly initialised model.
    state: GLA head key dim (gla, gla0), state_size (mamba, mamba2, la), head dim (sa)."""
    rng = np.random.default_rng(seed)
    V, D, nl = vocab, d_model, layers
    I = mlp or 2 * D
    t, frozen = {}, set()
    if family == "sa":
        H = heads or 2
        hd = state
        cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": V, "hidden_size": D,
               "intermediate_size": I, "num_hidden_layers": nl, "num_attention_heads": H, "num_key_value_heads": H,
               "head_dim": hd, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 1024,
               "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "tie_word_embeddings": False}
        t["model.embed_tokens.weight"] = rng.standard_normal((V, D)) * 0.5
        for l in range(nl):
            p = f"model.layers.{l}."
            t[p + "input_layernorm.weight"] = np.ones(D)
            t[p + "post_attention_layernorm.weight"] = np.ones(D)
            for n in ("q", "k", "v"):
                t[p + f"self_attn.{n}_proj.weight"] = _lin(rng, H * hd, D)
            t[p + "self_attn.o_proj.weight"] = _lin(rng, D, H * hd)
            t[p + "mlp.gate_proj.weight"], t[p + "mlp.up_proj.weight"] = _lin(rng, I, D), _lin(rng, I, D)
            t[p + "mlp.down_proj.weight"] = _lin(rng, D, I, 0.5)
        t["model.norm.weight"] = np.ones(D)
        t["lm_head.weight"] = _lin(rng, V, D)
    elif family in ("gla", "gla0"):
        H = heads or 2
        hk, hv = state, D // H
        cfg = {"architectures": ["GLAForCausalLM"], "model_type": "gla", "vocab_size": V, "hidden_size": D,
               "num_hidden_layers": nl, "num_heads": H, "num_kv_heads": None, "expand_k": hk * H / D,
               "expand_v": 1.0, "intermediate_size": I, "hidden_act": "swish", "norm_eps": 1e-6,
               "use_output_gate": True, "use_short_conv": family == "gla", "conv_size": 4, "conv_bias": False, "feature_map": None, "attn_mode": "chunk",
               "clamp_min": 0.0 if family == "gla0" else GLA_CLAMP_MIN, "elementwise_affine": True, "fuse_norm": True,
               "attn": None, "tie_word_embeddings": False, "initializer_range": 0.02}
        assert int(D * cfg["expand_k"]) == hk * H
        t["model.embeddings.weight"] = rng.standard_normal((V, D)) * 0.5
        for l in range(nl):
            p, a = f"model.layers.{l}.", f"model.layers.{l}.attn."
            t[p + "attn_norm.weight"], t[p + "mlp_norm.weight"] = np.ones(D), np.ones(D)
            t[a + "q_proj.weight"], t[a + "k_proj.weight"] = _lin(rng, H * hk, D), _lin(rng, H * hk, D)
            t[a + "v_proj.weight"], t[a + "g_proj.weight"] = _lin(rng, H * hv, D), _lin(rng, H * hv, D)
            if family == "gla":  # short convolutions on q, k, v (fla's use_short_conv): the token shift MQAR needs
                for n, dim in (("q", H * hk), ("k", H * hk), ("v", H * hv)):
                    t[a + f"{n}_conv1d.weight"] = rng.standard_normal((dim, 1, 4)) / 2.0
            t[a + "gk_proj.0.weight"] = _lin(rng, 16, D)
            t[a + "gk_proj.1.weight"] = _lin(rng, H * hk, 16, 0.1)
            # per-step log-decay g = logsigmoid(b)/16 spread log-uniformly over [-2, -1e-3] (like Mamba's
            # dt init): some key dims forget within a token or two, others keep for hundreds
            g = -np.exp(rng.uniform(math.log(1e-3), math.log(2.0), H * hk))
            t[a + "gk_proj.1.bias"] = -np.log(np.expm1(-16 * g))
            t[a + "o_proj.weight"] = _lin(rng, D, H * hv)
            t[a + "g_norm_swish_gate.weight"] = np.ones(hv)
            t[p + "mlp.gate_proj.weight"], t[p + "mlp.up_proj.weight"] = _lin(rng, I, D), _lin(rng, I, D)
            t[p + "mlp.down_proj.weight"] = _lin(rng, D, I, 0.5)
        t["model.norm.weight"] = np.ones(D)
        t["lm_head.weight"] = _lin(rng, V, D)
    elif family == "mamba":
        N, E, K = state, 2 * D, 4
        R = math.ceil(D / 16)
        cfg = {"architectures": ["MambaForCausalLM"], "model_type": "mamba", "vocab_size": V, "hidden_size": D,
               "state_size": N, "num_hidden_layers": nl, "layer_norm_epsilon": 1e-5, "expand": 2, "conv_kernel": K,
               "use_bias": False, "use_conv_bias": True, "hidden_act": "silu", "time_step_rank": R,
               "intermediate_size": E, "tie_word_embeddings": False, "residual_in_fp32": True}
        t["backbone.embeddings.weight"] = rng.standard_normal((V, D)) * 0.5
        for l in range(nl):
            p = f"backbone.layers.{l}."
            t[p + "norm.weight"] = np.ones(D)
            t[p + "mixer.in_proj.weight"] = _lin(rng, 2 * E, D)
            t[p + "mixer.conv1d.weight"] = rng.standard_normal((E, 1, K)) / math.sqrt(K)
            t[p + "mixer.conv1d.bias"] = np.zeros(E)
            t[p + "mixer.x_proj.weight"] = _lin(rng, R + 2 * N, E)
            t[p + "mixer.dt_proj.weight"] = rng.uniform(-1, 1, (E, R)) * R ** -0.5
            t[p + "mixer.dt_proj.bias"] = _dt_bias(rng, E)
            t[p + "mixer.A_log"] = np.log(np.tile(np.arange(1, N + 1, dtype=float), (E, 1)))
            t[p + "mixer.D"] = np.ones(E)
            t[p + "mixer.out_proj.weight"] = _lin(rng, D, E, 0.5)
        t["backbone.norm_f.weight"] = np.ones(D)
        t["lm_head.weight"] = _lin(rng, V, D)
    elif family in ("mamba2", "la"):
        N, E, K, G = state, 2 * D, 4, 1
        P = heads_dim = 32
        H = E // P
        cfg = {"architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "vocab_size": V, "hidden_size": D,
               "state_size": N, "num_hidden_layers": nl, "layer_norm_epsilon": 1e-5, "expand": 2, "conv_kernel": K,
               "n_groups": G, "num_heads": H, "head_dim": heads_dim, "use_bias": False, "use_conv_bias": True,
               "hidden_act": "silu", "time_step_limit": [0.0, float("inf")], "rms_norm": True, "chunk_size": 256,
               "tie_word_embeddings": False, "residual_in_fp32": True}
        conv_dim = E + 2 * G * N
        t["backbone.embeddings.weight"] = rng.standard_normal((V, D)) * 0.5
        for l in range(nl):
            p = f"backbone.layers.{l}."
            t[p + "norm.weight"] = np.ones(D)
            t[p + "mixer.in_proj.weight"] = _lin(rng, E + conv_dim + H, D)
            t[p + "mixer.conv1d.weight"] = rng.standard_normal((conv_dim, 1, K)) / math.sqrt(K)
            t[p + "mixer.conv1d.bias"] = np.zeros(conv_dim)
            t[p + "mixer.dt_bias"] = _dt_bias(rng, H)
            if family == "la":
                t[p + "mixer.A_log"] = np.full(H, LA_A_LOG)
                frozen.add(p + "mixer.A_log")
            else:
                t[p + "mixer.A_log"] = np.log(rng.uniform(1, 16, H))
            t[p + "mixer.D"] = np.ones(H)
            t[p + "mixer.norm.weight"] = np.ones(E)
            t[p + "mixer.out_proj.weight"] = _lin(rng, D, E, 0.5)
        t["backbone.norm_f.weight"] = np.ones(D)
        t["lm_head.weight"] = _lin(rng, V, D)
    else:
        raise ValueError(f"unknown family {family} ({', '.join(FAMILIES)})")
    if note:
        cfg["ess_note"] = note
    return cfg, t, frozen
