"""Write ess operator files (format "ess-operators") from numpy arrays or torch tensors.

Use it to dump the operators of your own PyTorch model so that `ess compute` can measure them:

    from ess_writer import OperatorFileWriter
    with OperatorFileWriter("ops.h5") as w:
        w.add_softmax_attention("layers.0.attn", q, k, layer_index=0)   # q, k: [B, H, L, d]
        w.add_mamba("layers.1.mixer", dt, A, B, C, layer_index=1)

Tensors are given exactly as the layer uses them (feature maps, scales and softplus already
applied); the shapes are those of docs/operators.md. The file is written to a temporary name and
renamed when the `with` block ends without an exception, so a failed export leaves nothing behind.
Requires numpy and h5py only.
"""
import datetime
import os
import sys
import tempfile

import h5py
import numpy as np

FORMAT = "ess-operators"
FORMAT_VERSION = (1, 0)


def _array(x, name):
    """numpy float array from numpy / torch / lists; rejects NaN and Inf."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: non-finite value {a[idx]} at index {list(idx)}")
    return a


def _shape_error(layer, name, a, expected):
    return ValueError(f"layer '{layer}': {name} has shape {list(a.shape)}, expected {expected}")


class OperatorFileWriter:
    """Context manager writing one operator file. Call add_* once per layer."""

    def __init__(self, path, command_line=None, dtype=np.float64, seq_len=None):
        self.path = os.fspath(path)
        self.command_line = command_line if command_line is not None else " ".join(sys.argv)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError("dtype must be float32 or float64")
        self.seq_len = seq_len
        self._file = None
        self._tmp = None
        self._next_index = 0

    def __enter__(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        fd, self._tmp = tempfile.mkstemp(prefix=".ess-ops-", suffix=".h5", dir=directory)
        os.close(fd)
        self._file = h5py.File(self._tmp, "w")
        a = self._file.attrs
        a["format"] = FORMAT
        a["format_version"] = np.array(FORMAT_VERSION, dtype=np.int64)
        a["creator"] = "ess_writer.py 0.1"
        a["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        a["command_line"] = self.command_line
        if self.seq_len is not None:
            a["seq_len"] = np.int64(self.seq_len)
        self._file.create_group("layers")
        return self

    def __exit__(self, exc_type, exc, tb):
        self._file.close()
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
        if self._file is None:
            raise RuntimeError("use OperatorFileWriter inside a `with` block")
        if "/" in name:
            raise ValueError(f"layer name '{name}' must not contain '/'")
        if name in self._file["layers"]:
            raise ValueError(f"layer '{name}' written twice")
        if layer_index is None:
            layer_index = self._next_index
        self._next_index = max(self._next_index, int(layer_index) + 1)
        g = self._file["layers"].create_group(name)
        g.attrs["family"] = family
        g.attrs["layer_index"] = np.int64(layer_index)
        for k, v in (attrs or {}).items():
            g.attrs[k] = v
        for k, v in (datasets or {}).items():
            if k == "mask":
                g.create_dataset(k, data=np.asarray(v, dtype=np.uint8))
            else:
                g.create_dataset(k, data=np.ascontiguousarray(v, dtype=self.dtype))
        return g

    # -- families ---------------------------------------------------------------------------
    def _qk(self, name, q, k):
        q, k = _array(q, "q"), _array(k, "k")
        if q.ndim != 4:
            raise _shape_error(name, "q", q, "[B, H, L, d]")
        if k.shape != q.shape:
            raise _shape_error(name, "k", k, list(q.shape))
        return q, k

    def add_dense(self, name, T, layer_index=None):
        T = _array(T, "T")
        if T.ndim != 4 or T.shape[2] != T.shape[3]:
            raise _shape_error(name, "T", T, "[B, C, L, L]")
        if np.any(np.triu(T, 1) != 0):
            raise ValueError(f"layer '{name}': T is not lower-triangular (causal)")
        return self.add_layer(name, "dense", layer_index, {"T": T})

    def add_softmax_attention(self, name, q, k, mask=None, scale=None, window=0, layer_index=None):
        q, k = self._qk(name, q, k)
        L = q.shape[2]
        data = {"q": q, "k": k}
        if mask is not None:
            m = np.asarray(mask).astype(np.uint8)
            if m.shape != (L, L):
                raise _shape_error(name, "mask", m, [L, L])
            if np.any(np.triu(m, 1)):
                raise ValueError(f"layer '{name}': mask is not causal")
            data["mask"] = m
        attrs = {"window": np.int64(window)}
        if scale is not None:
            attrs["scale"] = float(scale)
        return self.add_layer(name, "softmax_attention", layer_index, data, attrs)

    def add_linear_attention(self, name, q, k, normalize=False, layer_index=None):
        q, k = self._qk(name, q, k)
        return self.add_layer(name, "linear_attention", layer_index, {"q": q, "k": k},
                              {"normalize": np.int64(bool(normalize))})

    def add_retention(self, name, q, k, decay, layer_index=None):
        q, k = self._qk(name, q, k)
        decay = _array(decay, "decay")
        if decay.shape not in ((q.shape[1],), (q.shape[1], q.shape[3])):
            raise _shape_error(name, "decay", decay, f"[{q.shape[1]}] or [{q.shape[1]}, {q.shape[3]}]")
        return self.add_layer(name, "retention", layer_index, {"q": q, "k": k, "decay": decay})

    def add_gla(self, name, q, k, log_decay, layer_index=None):
        q, k = self._qk(name, q, k)
        g = _array(log_decay, "log_decay")
        if g.shape != q.shape:
            raise _shape_error(name, "log_decay", g, list(q.shape))
        if np.any(g > 0):
            raise ValueError(f"layer '{name}': log_decay must be <= 0")
        return self.add_layer(name, "gla", layer_index, {"q": q, "k": k, "log_decay": g})

    def add_delta_net(self, name, q, k, beta, log_gate=None, layer_index=None):
        q, k = self._qk(name, q, k)
        beta = _array(beta, "beta")
        if beta.shape != q.shape[:3]:
            raise _shape_error(name, "beta", beta, list(q.shape[:3]))
        data = {"q": q, "k": k, "beta": beta}
        if log_gate is not None:
            g = _array(log_gate, "log_gate")
            if g.shape != q.shape[:3]:
                raise _shape_error(name, "log_gate", g, list(q.shape[:3]))
            data["log_gate"] = g
        return self.add_layer(name, "delta_net", layer_index, data)

    def add_mamba(self, name, dt, A, B, C, layer_index=None):
        dt, A, B, C = _array(dt, "dt"), _array(A, "A"), _array(B, "B"), _array(C, "C")
        if dt.ndim != 3:
            raise _shape_error(name, "dt", dt, "[B, C, L]")
        Bsz, Ch, L = dt.shape
        if A.ndim != 2 or A.shape[0] != Ch:
            raise _shape_error(name, "A", A, f"[{Ch}, N]")
        N = A.shape[1]
        for nm, t in (("B", B), ("C", C)):
            if t.shape != (Bsz, L, N):
                raise _shape_error(name, nm, t, [Bsz, L, N])
        return self.add_layer(name, "mamba", layer_index, {"dt": dt, "A": A, "B": B, "C": C})

    def add_mamba2(self, name, dt, A, B, C, layer_index=None):
        dt, A, B, C = _array(dt, "dt"), _array(A, "A"), _array(B, "B"), _array(C, "C")
        if dt.ndim != 3:
            raise _shape_error(name, "dt", dt, "[B, H, L]")
        Bsz, H, L = dt.shape
        if A.shape != (H,):
            raise _shape_error(name, "A", A, [H])
        if B.ndim != 4 or B.shape[0] != Bsz or B.shape[2] != L or H % B.shape[1]:
            raise _shape_error(name, "B", B, f"[{Bsz}, G, {L}, N] with {H} % G == 0")
        if C.shape != B.shape:
            raise _shape_error(name, "C", C, list(B.shape))
        return self.add_layer(name, "mamba2", layer_index, {"dt": dt, "A": A, "B": B, "C": C})

    def add_s4d(self, name, a_re, b_re, c_re, a_im=None, b_im=None, c_im=None, seq_len=None, layer_index=None):
        data = {"a_re": _array(a_re, "a_re"), "b_re": _array(b_re, "b_re"), "c_re": _array(c_re, "c_re")}
        for nm, t in (("a_im", a_im), ("b_im", b_im), ("c_im", c_im)):
            if t is not None:
                data[nm] = _array(t, nm)
        shape = data["a_re"].shape
        if len(shape) != 2:
            raise _shape_error(name, "a_re", data["a_re"], "[C, N]")
        for nm, t in data.items():
            if t.shape != shape:
                raise _shape_error(name, nm, t, list(shape))
        attrs = {"seq_len": np.int64(seq_len)} if seq_len is not None else {}
        return self.add_layer(name, "s4d", layer_index, data, attrs)

    def add_conv(self, name, h, pre_gate=None, post_gate=None, seq_len=None, layer_index=None):
        h = _array(h, "h")
        if h.ndim != 2:
            raise _shape_error(name, "h", h, "[C, K]")
        data = {"h": h}
        for nm, t in (("pre_gate", pre_gate), ("post_gate", post_gate)):
            if t is not None:
                t = _array(t, nm)
                if t.ndim != 3 or t.shape[1] != h.shape[0]:
                    raise _shape_error(name, nm, t, f"[B, {h.shape[0]}, L]")
                data[nm] = t
        attrs = {"seq_len": np.int64(seq_len)} if seq_len is not None else {}
        return self.add_layer(name, "conv", layer_index, data, attrs)
