#!/usr/bin/python3
"""Checks ess_writer.dense_T against explicit recurrences (and torch's attention for softmax):
for random operators of every family and a random input x per channel, T x must equal the
output of the family's own recurrence h_t = A_t h_{t-1} + B_t x_t, y_t = C_t . h_t.
Also checks the writer's validation and atomic write. Exit 0 when all pass.

    /usr/bin/python3 tools/python/test_dense_T.py
"""
import os
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ess_writer import OperatorFileWriter, dense_T, read_layer  # noqa: E402

rng = np.random.default_rng(7)
Bsz, H, L, d, N, C = 2, 3, 11, 4, 5, 3
r = lambda *s: rng.standard_normal(s)  # noqa: E731
u = lambda lo, hi, *s: rng.uniform(lo, hi, s)  # noqa: E731
failures = []


def check(name, T, run):
    """run(b, c, x) -> y by recurrence; compares with T[b, c] @ x."""
    err = 0.0
    for b in range(T.shape[0]):
        for c in range(T.shape[1]):
            x = rng.standard_normal(T.shape[2])
            y_ref = run(b, c, x)
            e = np.max(np.abs(T[b, c] @ x - y_ref)) / max(1.0, np.max(np.abs(y_ref)))
            err = max(err, e if e == e else np.inf)  # a NaN error is a failure, not dropped by max
    ok = err < 1e-12 and np.all(np.triu(T, 1) == 0)
    print(f"{name:28s} max rel err {err:.1e} {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(name)


def linear_like(q, k, decay_fn, normalize=False):
    def run(b, h, x):
        s = np.zeros(q.shape[3])
        ks = np.zeros(q.shape[3])
        y = np.zeros(len(x))
        for t in range(len(x)):
            s = decay_fn(b, h, t) * s + k[b, h, t] * x[t]
            ks = ks + k[b, h, t]
            y[t] = q[b, h, t] @ s / (q[b, h, t] @ ks if normalize else 1.0)
        return y
    return run


# softmax attention: torch masked softmax (independent of dense_T's row loop)
try:
    import torch
    for window, use_mask, scale, cap in ((0, False, None, 0), (4, False, 0.7, 0), (0, True, None, 0),
                                         (5, True, 1.3, 0), (0, False, None, 0.8), (4, True, 1.1, 1.5)):
        q, k = r(Bsz, H, L, d), r(Bsz, H, L, d)
        mask = None
        if use_mask:
            mask = np.tril(np.ones((L, L), np.uint8)) * (((np.arange(L)[:, None] - np.arange(L)[None]) % 3) == 0)
            mask[:, 0] = 1
        T = dense_T("softmax_attention", q=q, k=k, mask=mask, scale=scale, window=window, softcap=cap)
        allowed = np.tril(np.ones((L, L), bool))
        if window:
            allowed &= (np.arange(L)[:, None] - np.arange(L)[None]) < window
        if mask is not None:
            allowed &= mask.astype(bool)
        sc = scale if scale is not None else d ** -0.5

        def run(b, h, x, q=q, k=k, allowed=allowed, sc=sc, cap=cap):
            qt, kt, vt = torch.tensor(q[b, h]), torch.tensor(k[b, h]), torch.tensor(x)[:, None]
            scores = qt @ kt.T * sc
            if cap:  # Gemma-2 logit soft-capping
                scores = torch.tanh(scores / cap) * cap
            scores = scores.masked_fill(~torch.tensor(allowed), float("-inf"))
            o = torch.softmax(scores, dim=-1) @ vt
            return o[:, 0].numpy()
        check(f"softmax w={window} mask={use_mask} softcap={cap}", T, run)
except ImportError:
    print("torch not importable: softmax check skipped")

q, k = u(0.1, 1, Bsz, H, L, d), u(0.1, 1, Bsz, H, L, d)
check("linear_attention", dense_T("linear_attention", q=q, k=k), linear_like(q, k, lambda b, h, t: 1.0))
check("linear_attention normalized", dense_T("linear_attention", q=q, k=k, normalize=1),
      linear_like(q, k, lambda b, h, t: 1.0, normalize=True))

q, k = r(Bsz, H, L, d), r(Bsz, H, L, d)
for dec in (u(0.5, 0.99, H), u(0.5, 0.99, H, d)):
    check(f"retention decay {list(dec.shape)}", dense_T("retention", q=q, k=k, decay=dec),
          linear_like(q, k, lambda b, h, t, dec=dec: dec.reshape(H, -1)[h]))

g = u(-0.8, 0, Bsz, H, L, d)
check("gla", dense_T("gla", q=q, k=k, log_decay=g), linear_like(q, k, lambda b, h, t: np.exp(g[b, h, t])))

beta, lg = u(0, 1, Bsz, H, L), u(-0.4, 0, Bsz, H, L)
kn = k / np.linalg.norm(k, axis=-1, keepdims=True)
for gate in (None, lg):
    def run(b, h, x, gate=gate):
        s = np.zeros(d)
        y = np.zeros(len(x))
        for t in range(len(x)):  # s_t = e^{g_t} (s_{t-1} - beta_t k_t (k_t . s_{t-1})) + beta_t k_t x_t
            e = 1.0 if gate is None else np.exp(gate[b, h, t])
            s = e * (s - beta[b, h, t] * kn[b, h, t] * (kn[b, h, t] @ s)) + beta[b, h, t] * kn[b, h, t] * x[t]
            y[t] = q[b, h, t] @ s
        return y
    check(f"delta_net gate={gate is not None}", dense_T("delta_net", q=q, k=kn, beta=beta, log_gate=gate), run)

dt, A, Bm, Cm = u(0.01, 0.8, Bsz, C, L), u(-2, -0.1, C, N), r(Bsz, L, N), r(Bsz, L, N)
dt[0, 0, 3] = 0.0


def run_mamba(b, c, x):
    h = np.zeros(N)
    y = np.zeros(len(x))
    for t in range(len(x)):
        h = np.exp(dt[b, c, t] * A[c]) * h + dt[b, c, t] * Bm[b, t] * x[t]
        y[t] = Cm[b, t] @ h
    return y


check("mamba", dense_T("mamba", dt=dt, A=A, B=Bm, C=Cm), run_mamba)

G, Hm = 2, 4
dt2, A2, B2, C2 = u(0.01, 0.8, Bsz, Hm, L), u(-2, -0.1, Hm), r(Bsz, G, L, N), r(Bsz, G, L, N)


def run_mamba2(b, h, x):
    gidx = h // (Hm // G)
    s = np.zeros(N)
    y = np.zeros(len(x))
    for t in range(len(x)):
        s = np.exp(dt2[b, h, t] * A2[h]) * s + dt2[b, h, t] * B2[b, gidx, t] * x[t]
        y[t] = C2[b, gidx, t] @ s
    return y


check("mamba2", dense_T("mamba2", dt=dt2, A=A2, B=B2, C=C2), run_mamba2)

a = u(0.2, 0.95, C, N) * np.exp(1j * u(-2, 2, C, N))
bb, cc = r(C, N) + 1j * r(C, N), r(C, N) + 1j * r(C, N)


def run_s4d(_, c, x):
    h = np.zeros(N, complex)
    y = np.zeros(len(x))
    for t in range(len(x)):
        h = a[c] * h + bb[c] * x[t]
        y[t] = np.real(cc[c] @ h)
    return y


check("s4d complex", dense_T("s4d", seq_len=L, a_re=a.real, a_im=a.imag, b_re=bb.real, b_im=bb.imag, c_re=cc.real,
                             c_im=cc.imag), run_s4d)

for K in (3, L):
    hk, pre, post = r(C, K), r(Bsz, C, L), r(Bsz, C, L)
    for gated in (False, True):
        def run(b, c, x, hk=hk, pre=pre, post=post, gated=gated, K=K):
            p = pre[b, c] if gated else np.ones(len(x))
            o = post[b, c] if gated else np.ones(len(x))
            return np.array([o[i] * sum(hk[c, m] * p[i - m] * x[i - m] for m in range(min(K, i + 1)))
                             for i in range(len(x))])
        T = dense_T("conv", h=hk, pre_gate=pre if gated else None, post_gate=post if gated else None, seq_len=L)
        if not gated:
            T = np.broadcast_to(T, (Bsz,) + T.shape[1:])
        check(f"conv K={K} gated={gated}", T, run)

Td = np.tril(r(Bsz, C, L, L))
check("dense", dense_T("dense", T=Td), lambda b, c, x: Td[b, c] @ x)

# writer: validation errors, atomic write, round trip through read_layer
tmpdir = tempfile.mkdtemp()
path = os.path.join(tmpdir, "ops.h5")
bad_cases = {
    "nan": lambda w: w.add_gla("x", q, k, np.where(g < -0.7, np.nan, g)),
    "positive log_decay": lambda w: w.add_gla("x", q, k, -g),
    "mamba A shape": lambda w: w.add_mamba("x", dt, A.T, Bm, Cm),
    "mamba2 groups": lambda w: w.add_mamba2("x", dt2[:, :3], A2[:3], B2, C2),
    "mask not causal": lambda w: w.add_softmax_attention("x", q, k, mask=np.ones((L, L))),
    "dense not causal": lambda w: w.add_dense("x", r(1, 1, L, L)),
    "negative dt": lambda w: w.add_mamba("x", -dt, A, Bm, Cm),
}
for what, fn in bad_cases.items():
    try:
        with OperatorFileWriter(path) as w:
            fn(w)
        failures.append(f"writer accepted {what}")
    except ValueError as e:
        print(f"writer rejects {what:20s}: {e}")
    if os.path.exists(path) or len(os.listdir(tmpdir)):
        failures.append(f"writer left a file after {what}")
with OperatorFileWriter(path, dtype=np.float32) as w:
    w.add_mamba("m", dt, A, Bm, Cm, layer_index=3)
    w.add_softmax_attention("a", q, k, window=4, scale=0.5)
with h5py.File(path) as f:
    assert f.attrs["format"] == "ess-operators" and list(f.attrs["format_version"]) == [1, 0]
    fam, kw = read_layer(f["layers/m"])
    assert fam == "mamba" and f["layers/m"].attrs["layer_index"] == 3 and kw["dt"].dtype == np.float32
    assert f["layers/a"].attrs["layer_index"] == 4 and f["layers/a"].attrs["window"] == 4
    e = np.max(np.abs(dense_T(fam, **kw) - dense_T("mamba", dt=dt, A=A, B=Bm, C=Cm)))
    assert e < 1e-5, e
print("writer round trip ok")

if failures:
    print("FAILED:", failures)
    sys.exit(1)
print("all dense_T checks passed")
