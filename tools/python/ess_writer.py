"""Write ess operator files (format "ess-operators") from numpy arrays or torch tensors, and
materialize any operator's dense T with an independent NumPy reference (`dense_T`).

Use it to dump the operators of your own PyTorch model so that `ess compute` can measure them:

    from ess_writer import OperatorFileWriter
    with OperatorFileWriter("ops.h5") as w:
        w.add_softmax_attention("layers.0.attn", q, k, layer_index=0)   # q, k: [B, H, L, d]
        w.add_mamba("layers.1.mixer", dt, A, B, C, layer_index=1)

Tensors are given exactly as the layer uses them (feature maps, scales and softplus already
applied); the shapes are those of docs/operators.md (DESIGN §5). The file is written to a
temporary name in the target directory and renamed when the `with` block ends without an
exception, so a failed export leaves nothing behind. Every tensor is checked (exact shapes,
no NaN/Inf, the family's sign constraints) before anything is written.

    T = dense_T("mamba", dt=dt, A=A, B=B, C=C)   # [B, C, L, L], float64, straight from DESIGN §3

Requires numpy and h5py only (torch tensors are accepted but torch is not imported).
"""
import datetime
import os
import sys
import tempfile

import h5py
import numpy as np

FORMAT = "ess-operators"
FORMAT_VERSION = (1, 0)
CREATOR = "ess_writer.py 0.1"

FAMILIES = ("dense", "softmax_attention", "linear_attention", "retention", "gla", "delta_net", "mamba",
            "mamba2", "s4d", "conv")
HEAD_FAMILIES = ("softmax_attention", "linear_attention", "retention", "gla", "delta_net", "mamba2")


def channel_kind(family):
    """'head' for families whose T is shared by the value channels of a head, else 'channel'."""
    return "head" if family in HEAD_FAMILIES else "channel"


# ---------------------------------------------------------------------------------------------
# input conversion and checks


def _array(x, name):
    """float64 numpy array from numpy / torch (any dtype, any device) / lists; rejects NaN and Inf."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if hasattr(x, "double") and x.is_floating_point():
            x = x.double()
        x = x.numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "fiub":
        raise ValueError(f"{name}: expected a real numeric array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = [int(i) for i in np.argwhere(bad)[0]]
        raise ValueError(f"{name}: non-finite value {a[tuple(idx)]} at index {idx}")
    return a


def _shape_error(layer, name, a, expected):
    return ValueError(f"layer '{layer}': {name} has shape {list(np.shape(a))}, expected {expected}")


def _check_sign(layer, name, a, upper=None, lower=None):
    if upper is not None and np.any(a > upper):
        idx = [int(i) for i in np.argwhere(a > upper)[0]]
        raise ValueError(f"layer '{layer}': {name} must be <= {upper}; found {a[tuple(idx)]} at index {idx}")
    if lower is not None and np.any(a < lower):
        idx = [int(i) for i in np.argwhere(a < lower)[0]]
        raise ValueError(f"layer '{layer}': {name} must be >= {lower}; found {a[tuple(idx)]} at index {idx}")


def _allowed(L, window=0, mask=None):
    """Boolean [L, L]: causal, within the window (i - j < w) when w > 0, and the mask."""
    i = np.arange(L)[:, None]
    j = np.arange(L)[None, :]
    ok = j <= i
    if window:
        ok &= (i - j) < window
    if mask is not None:
        ok &= np.asarray(mask).astype(bool)
    return ok


def validate(family, name="<layer>", **t):
    """Checks one layer's tensors (already numpy float64 via _array, mask uint8) against the
    operator table of DESIGN §5. Raises ValueError naming the layer and tensor. Returns nothing."""
    if family not in FAMILIES:
        raise ValueError(f"layer '{name}': unknown family '{family}' (known: {', '.join(FAMILIES)})")
    if family == "dense":
        T = t["T"]
        if T.ndim != 4 or T.shape[2] != T.shape[3]:
            raise _shape_error(name, "T", T, "[B, C, L, L]")
        up = np.argwhere(np.triu(T, 1) != 0)
        if len(up):
            b, c, i, j = (int(v) for v in up[0])
            raise ValueError(f"layer '{name}': T is not causal: T[{b}, {c}, {i}, {j}] = {T[b, c, i, j]} above "
                             "the diagonal")
        return
    if family in ("softmax_attention", "linear_attention", "retention", "gla", "delta_net"):
        q, k = t["q"], t["k"]
        if q.ndim != 4:
            raise _shape_error(name, "q", q, "[B, H, L, d]")
        if k.shape != q.shape:
            raise _shape_error(name, "k", k, list(q.shape))
        Bsz, H, L, d = q.shape
        if family == "softmax_attention":
            window = int(t.get("window") or 0)
            if window < 0:
                raise ValueError(f"layer '{name}': window must be >= 0, got {window}")
            scale = t.get("scale")
            if scale is not None and not (np.isfinite(scale) and scale > 0):
                raise ValueError(f"layer '{name}': scale must be a finite number > 0, got {scale}")
            softcap = t.get("softcap")
            if softcap is not None and not (np.isfinite(softcap) and softcap >= 0):
                raise ValueError(f"layer '{name}': softcap must be a finite number >= 0 (0 = none), got {softcap}")
            m = t.get("mask")
            if m is not None:
                if m.shape != (L, L):
                    raise _shape_error(name, "mask", m, [L, L])
                if np.any((m != 0) & (m != 1)):
                    raise ValueError(f"layer '{name}': mask must hold 0/1 values")
                up = np.argwhere(np.triu(m, 1) != 0)
                if len(up):
                    raise ValueError(f"layer '{name}': mask is not causal: mask[{up[0][0]}, {up[0][1]}] = 1 "
                                     "above the diagonal")
            rows = _allowed(L, window, m).any(axis=1)
            if not rows.all():
                raise ValueError(f"layer '{name}': row {int(np.argmin(rows))} of the attention pattern has no "
                                 "allowed position")
        elif family == "linear_attention":
            if int(t.get("normalize") or 0):
                z = np.einsum("bhid,bhid->bhi", q, np.cumsum(k, axis=2))  # z_i = sum_{m<=i} q_i . k_m
                if np.any(z == 0):
                    b, h, i = (int(v) for v in np.argwhere(z == 0)[0])
                    raise ValueError(f"layer '{name}': normalizer z_i = sum_(m<=i) q_i.k_m is 0 at batch {b}, "
                                     f"head {h}, i = {i}")
        elif family == "retention":
            dec = t["decay"]
            if dec.shape not in ((H,), (H, d)):
                raise _shape_error(name, "decay", dec, f"[{H}] or [{H}, {d}]")
        elif family == "gla":
            g = t["log_decay"]
            if g.shape != q.shape:
                raise _shape_error(name, "log_decay", g, list(q.shape))
            _check_sign(name, "log_decay", g, upper=0.0)
        elif family == "delta_net":
            beta = t["beta"]
            if beta.shape != (Bsz, H, L):
                raise _shape_error(name, "beta", beta, [Bsz, H, L])
            if t.get("log_gate") is not None:
                g = t["log_gate"]
                if g.shape != (Bsz, H, L):
                    raise _shape_error(name, "log_gate", g, [Bsz, H, L])
                _check_sign(name, "log_gate", g, upper=0.0)
        return
    if family in ("mamba", "mamba2"):
        dt, A, Bm, Cm = t["dt"], t["A"], t["B"], t["C"]
        if dt.ndim != 3:
            raise _shape_error(name, "dt", dt, "[B, C, L]" if family == "mamba" else "[B, H, L]")
        Bsz, Ch, L = dt.shape
        if family == "mamba":
            if A.ndim != 2 or A.shape[0] != Ch:
                raise _shape_error(name, "A", A, f"[{Ch}, N]")
            N = A.shape[1]
            for nm, x in (("B", Bm), ("C", Cm)):
                if x.shape != (Bsz, L, N):
                    raise _shape_error(name, nm, x, [Bsz, L, N])
        else:
            if A.shape != (Ch,):
                raise _shape_error(name, "A", A, [Ch])
            if Bm.ndim != 4 or Bm.shape[0] != Bsz or Bm.shape[2] != L or Bm.shape[1] < 1 or Ch % Bm.shape[1]:
                raise _shape_error(name, "B", Bm, f"[{Bsz}, G, {L}, N] with H = {Ch} divisible by G")
            if Cm.shape != Bm.shape:
                raise _shape_error(name, "C", Cm, list(Bm.shape))
        _check_sign(name, "dt", dt, lower=0.0)
        _check_sign(name, "A", A, upper=0.0)
        return
    if family == "s4d":
        shape = t["a_re"].shape
        if len(shape) != 2:
            raise _shape_error(name, "a_re", t["a_re"], "[C, N]")
        for nm in ("a_re", "b_re", "c_re", "a_im", "b_im", "c_im"):
            if t.get(nm) is not None and t[nm].shape != shape:
                raise _shape_error(name, nm, t[nm], list(shape))
        return
    if family == "conv":
        h = t["h"]
        if h.ndim != 2:
            raise _shape_error(name, "h", h, "[C, K]")
        gates = [(nm, t[nm]) for nm in ("pre_gate", "post_gate") if t.get(nm) is not None]
        for nm, x in gates:
            if x.ndim != 3 or x.shape[1] != h.shape[0]:
                raise _shape_error(name, nm, x, f"[B, {h.shape[0]}, L]")
        if len(gates) == 2 and gates[0][1].shape != gates[1][1].shape:
            raise _shape_error(name, "post_gate", gates[1][1], list(gates[0][1].shape))
        return


# ---------------------------------------------------------------------------------------------
# writer


class OperatorFileWriter:
    """Context manager writing one operator file. Call add_* once per layer.

    dtype: np.float64 (default) or np.float32 for the stored tensors.
    seq_len: optional root attribute, the sequence length for layers without a time axis of their
    own (s4d, ungated conv)."""

    def __init__(self, path, command_line=None, dtype=np.float64, seq_len=None):
        self.path = os.fspath(path)
        self.command_line = command_line if command_line is not None else " ".join(sys.argv)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError("dtype must be float32 or float64")
        self.seq_len = seq_len
        self._file = None
        self._tmp = None
        self._next_index = 0

    @property
    def file(self):
        """The open h5py.File (for extra datasets, e.g. logits next to the operators)."""
        return self._file

    def __enter__(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, self._tmp = tempfile.mkstemp(prefix=".ess-ops-", suffix=".h5.tmp", dir=directory)
        os.close(fd)
        try:
            self._file = h5py.File(self._tmp, "w")
            a = self._file.attrs
            a["format"] = FORMAT
            a["format_version"] = np.array(FORMAT_VERSION, dtype=np.int64)
            a["creator"] = CREATOR
            a["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            a["command_line"] = self.command_line
            if self.seq_len is not None:
                a["seq_len"] = np.int64(self.seq_len)
            self._file.create_group("layers")
        except BaseException:
            if self._file is not None:
                self._file.close()
            os.unlink(self._tmp)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self._file.close()
        except BaseException:
            os.unlink(self._tmp)
            raise
        finally:
            self._file = None
        if exc_type is None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp, 0o666 & ~umask)  # mkstemp creates 0600
            os.replace(self._tmp, self.path)
        else:
            os.unlink(self._tmp)
        return False

    # -- generic ----------------------------------------------------------------------------
    def add_layer(self, name, family, layer_index=None, datasets=None, attrs=None):
        """Writes /layers/<name> after validating it. datasets: dict of arrays/tensors; attrs: dict."""
        if self._file is None:
            raise RuntimeError("use OperatorFileWriter inside a `with` block")
        if not name or "/" in name:
            raise ValueError(f"layer name '{name}' must be non-empty and must not contain '/'")
        if name in self._file["layers"]:
            raise ValueError(f"layer '{name}' written twice")
        data = {}
        for k, v in (datasets or {}).items():
            if v is None:
                continue
            if k == "mask":
                m = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
                data[k] = np.ascontiguousarray(m.astype(np.uint8))
            else:
                data[k] = _array(v, f"layer '{name}': {k}")
        attrs = {k: v for k, v in (attrs or {}).items() if v is not None}
        validate(family, name, **data, **attrs)
        if layer_index is None:
            layer_index = self._next_index
        self._next_index = max(self._next_index, int(layer_index) + 1)
        g = self._file["layers"].create_group(name)
        g.attrs["family"] = family
        g.attrs["layer_index"] = np.int64(layer_index)
        for k, v in attrs.items():
            g.attrs[k] = v
        for k, v in data.items():
            g.create_dataset(k, data=v if k == "mask" else v.astype(self.dtype))
        return g

    # -- families ---------------------------------------------------------------------------
    def add_dense(self, name, T, layer_index=None):
        return self.add_layer(name, "dense", layer_index, {"T": T})

    def add_softmax_attention(self, name, q, k, mask=None, scale=None, window=0, layer_index=None, softcap=None):
        """softcap c > 0: attention logits c * tanh(q.k * scale / c) (Gemma-2); None or 0: none."""
        attrs = {"window": np.int64(window or 0)}
        if scale is not None:
            attrs["scale"] = np.float64(scale)
        if softcap:
            attrs["softcap"] = np.float64(softcap)
        return self.add_layer(name, "softmax_attention", layer_index, {"q": q, "k": k, "mask": mask}, attrs)

    def add_linear_attention(self, name, q, k, normalize=False, layer_index=None):
        return self.add_layer(name, "linear_attention", layer_index, {"q": q, "k": k},
                              {"normalize": np.int64(bool(normalize))})

    def add_retention(self, name, q, k, decay, layer_index=None):
        return self.add_layer(name, "retention", layer_index, {"q": q, "k": k, "decay": decay})

    def add_gla(self, name, q, k, log_decay, layer_index=None):
        return self.add_layer(name, "gla", layer_index, {"q": q, "k": k, "log_decay": log_decay})

    def add_delta_net(self, name, q, k, beta, log_gate=None, layer_index=None):
        return self.add_layer(name, "delta_net", layer_index, {"q": q, "k": k, "beta": beta, "log_gate": log_gate})

    def add_mamba(self, name, dt, A, B, C, layer_index=None):
        return self.add_layer(name, "mamba", layer_index, {"dt": dt, "A": A, "B": B, "C": C})

    def add_mamba2(self, name, dt, A, B, C, layer_index=None):
        return self.add_layer(name, "mamba2", layer_index, {"dt": dt, "A": A, "B": B, "C": C})

    def add_s4d(self, name, a_re, b_re, c_re, a_im=None, b_im=None, c_im=None, seq_len=None, layer_index=None):
        attrs = {"seq_len": np.int64(seq_len)} if seq_len is not None else {}
        return self.add_layer(name, "s4d", layer_index, {"a_re": a_re, "b_re": b_re, "c_re": c_re, "a_im": a_im,
                                                         "b_im": b_im, "c_im": c_im}, attrs)

    def add_conv(self, name, h, pre_gate=None, post_gate=None, seq_len=None, layer_index=None):
        attrs = {"seq_len": np.int64(seq_len)} if seq_len is not None else {}
        return self.add_layer(name, "conv", layer_index, {"h": h, "pre_gate": pre_gate, "post_gate": post_gate},
                              attrs)


# ---------------------------------------------------------------------------------------------
# independent dense reference: T [B, C, L, L] straight from the DESIGN §3 formulas


def _decay_sums(g):
    """S[..., i, j, :] = sum_{m=j+1..i} g[..., m, :] for i >= j (0 on the diagonal), from g [..., L, n]."""
    L = g.shape[-2]
    S = np.zeros(g.shape[:-2] + (L, L) + g.shape[-1:])
    for j in range(L):
        acc = np.zeros(g.shape[:-2] + g.shape[-1:])
        for i in range(j + 1, L):
            acc = acc + g[..., i, :]
            S[..., i, j, :] = acc
    return S


def dense_T(family, seq_len=None, **kw):
    """Materialized operator T [B, C, L, L] (float64, lower-triangular) of one layer.

    kw: the layer's datasets (numpy arrays or torch tensors) and attributes, named as in the
    operator file (q, k, mask, scale, window, normalize, decay, log_decay, beta, log_gate, dt, A,
    B, C, a_re, b_re, c_re, a_im, b_im, c_im, h, pre_gate, post_gate, T). seq_len is needed for s4d
    and ungated conv (which have no batch axis: B = 1). Slow loops on purpose: for tests only."""
    attrs = {k: kw.pop(k) for k in ("scale", "window", "normalize", "softcap") if k in kw}
    t = {k: (np.asarray(v).astype(np.uint8) if k == "mask" else _array(v, k)) for k, v in kw.items() if v is not None}
    validate(family, "dense_T", **t, **{k: v for k, v in attrs.items() if v is not None})

    if family == "dense":
        return t["T"].copy()

    if family == "softmax_attention":
        q, k = t["q"], t["k"]
        Bsz, H, L, d = q.shape
        scale = attrs.get("scale")
        scale = 1.0 / np.sqrt(d) if scale is None else float(scale)
        softcap = float(attrs.get("softcap") or 0.0)
        allowed = _allowed(L, int(attrs.get("window") or 0), t.get("mask"))
        T = np.zeros((Bsz, H, L, L))
        for i in range(L):
            js = np.nonzero(allowed[i])[0]
            s = np.einsum("bhd,bhjd->bhj", q[:, :, i], k[:, :, js]) * scale
            if softcap:
                s = softcap * np.tanh(s / softcap)
            e = np.exp(s - s.max(axis=-1, keepdims=True))
            T[:, :, i, js] = e / e.sum(axis=-1, keepdims=True)
        return T

    if family in ("linear_attention", "retention", "gla"):
        q, k = t["q"], t["k"]
        Bsz, H, L, d = q.shape
        if family == "linear_attention":
            decay = np.zeros((Bsz, H, L, L, d))  # log-decay sums: none
        elif family == "retention":
            gam = np.broadcast_to(t["decay"].reshape(H, -1), (H, d))
            lag = (np.arange(L)[:, None] - np.arange(L)[None, :]).clip(min=0)
            T = np.zeros((Bsz, H, L, L))
            for i in range(L):
                for j in range(i + 1):
                    T[:, :, i, j] = np.sum(q[:, :, i] * k[:, :, j] * gam[None] ** lag[i, j], axis=-1)
            return T
        else:
            decay = _decay_sums(t["log_decay"])  # [B, H, L, L, d]
        T = np.zeros((Bsz, H, L, L))
        for i in range(L):
            for j in range(i + 1):
                T[:, :, i, j] = np.sum(q[:, :, i] * k[:, :, j] * np.exp(decay[:, :, i, j]), axis=-1)
        if family == "linear_attention" and int(attrs.get("normalize") or 0):
            T = T / T.sum(axis=-1, keepdims=True)  # z_i = sum_{m<=i} q_i . k_m
        return T

    if family == "delta_net":
        q, k, beta = t["q"], t["k"], t["beta"]
        gate = np.exp(t["log_gate"]) if "log_gate" in t else np.ones_like(beta)
        Bsz, H, L, d = q.shape
        I = np.eye(d)
        T = np.zeros((Bsz, H, L, L))
        for b in range(Bsz):
            for h in range(H):
                Am = [gate[b, h, m] * (I - beta[b, h, m] * np.outer(k[b, h, m], k[b, h, m])) for m in range(L)]
                for j in range(L):
                    P = I.copy()  # A_i ... A_{j+1}
                    for i in range(j, L):
                        if i > j:
                            P = Am[i] @ P
                        T[b, h, i, j] = q[b, h, i] @ P @ (beta[b, h, j] * k[b, h, j])
        return T

    if family == "mamba":
        dt, A, Bm, Cm = t["dt"], t["A"], t["B"], t["C"]
        Bsz, C, L = dt.shape
        S = _decay_sums(dt[..., None])[..., 0]  # [B, C, L, L]: sum_{m=j+1..i} dt_m[c]
        T = np.zeros((Bsz, C, L, L))
        for i in range(L):
            for j in range(i + 1):
                decay = np.exp(A[None] * S[:, :, i, j, None])  # [B, C, N]
                T[:, :, i, j] = np.sum(Cm[:, None, i] * Bm[:, None, j] * decay, axis=-1) * dt[:, :, j]
        return T

    if family == "mamba2":
        dt, A, Bm, Cm = t["dt"], t["A"], t["B"], t["C"]
        Bsz, H, L = dt.shape
        G = Bm.shape[1]
        grp = np.arange(H) // (H // G)  # head h uses group h / (H / G)
        S = _decay_sums(dt[..., None])[..., 0]
        T = np.zeros((Bsz, H, L, L))
        for h in range(H):
            CB = np.einsum("bin,bjn->bij", Cm[:, grp[h]], Bm[:, grp[h]])
            T[:, h] = np.tril(CB * np.exp(A[h] * S[:, h]) * dt[:, h, None, :])
        return T

    if family == "s4d":
        if not seq_len:
            raise ValueError("dense_T: s4d needs seq_len")
        L = int(seq_len)
        cplx = lambda n: t[n + "_re"] + 1j * t.get(n + "_im", 0.0)  # noqa: E731
        a, b, c = cplx("a"), cplx("b"), cplx("c")
        T = np.zeros((1, a.shape[0], L, L))
        for i in range(L):
            for j in range(i + 1):
                T[0, :, i, j] = np.real(np.sum(c * a ** (i - j) * b, axis=-1))
        return T

    if family == "conv":
        h = t["h"]
        C, K = h.shape
        pre, post = t.get("pre_gate"), t.get("post_gate")
        gate = pre if pre is not None else post
        if gate is not None:
            Bsz, L = gate.shape[0], gate.shape[2]
        elif seq_len:
            Bsz, L = 1, int(seq_len)
        else:
            raise ValueError("dense_T: ungated conv needs seq_len")
        pre = np.ones((Bsz, C, L)) if pre is None else pre
        post = np.ones((Bsz, C, L)) if post is None else post
        T = np.zeros((Bsz, C, L, L))
        for i in range(L):
            for j in range(max(0, i - K + 1), i + 1):
                T[:, :, i, j] = post[:, :, i] * h[None, :, i - j] * pre[:, :, j]
        return T

    raise ValueError(f"unknown family '{family}'")


def read_layer(group):
    """(family, kwargs for dense_T) from an h5py group of an operator file."""
    fam = group.attrs["family"]
    fam = fam.decode() if isinstance(fam, bytes) else str(fam)
    kw = {k: group[k][...] for k in group.keys()}
    for k in ("scale", "window", "normalize", "softcap", "seq_len"):
        if k in group.attrs:
            kw[k] = group.attrs[k].item() if hasattr(group.attrs[k], "item") else group.attrs[k]
    return fam, kw
