#!/usr/bin/python3
"""Offline checks of the llama2.c reader, converter and tokenizer (llama2c.py, convert_llama2c.py).

    test_llama2c.py [ESS]

1. Random llama2.c checkpoints (GQA, shared and unshared classifier) are written in the legacy .bin
   format; a forward pass written here in llama2.c's own conventions (adjacent-pair RoPE with run.c's
   frequencies, run.c's RMSNorm eps 1e-5, GQA head h → kv head h / (H/Hkv)) must give the same
   logits (1e-10) as reference_forward.py's Hugging Face Llama forward on the converted directory;
   the same conversion without the q/k row permutation must not (control).
2. A hand-built tokenizer in both tokenizer.bin schemas: BPE merges by score, the dummy prefix,
   byte fallback, decode, and rejection of a malformed file.
3. Bad checkpoints (truncated, wrong header) are refused with a message naming the file.
4. With the path of the ess binary: the tokenizer.json the conversion writes for the hand-built
   vocabulary (llama2c.Tokenizer.hf_files) makes `ess tokenize` give llama2.c's encoding, including
   where the pair merged first is not the first merge of a piece (" a" before "ab").
Prints one line per check and 'N passed, N failed'; exit 1 on any failure.
"""
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import convert_llama2c  # noqa: E402
import llama2c  # noqa: E402
import reference_forward as rf  # noqa: E402
from st_io import load_checkpoint  # noqa: E402

passed, failed = 0, []


def check(name, ok, detail=""):
    global passed
    if ok:
        passed += 1
        print(f"ok   {name} {detail}")
    else:
        failed.append(name)
        print(f"FAIL {name} {detail}")


def write_bin(path, D, I, nl, H, Hkv, V, S, shared, rng):
    hd = D // H
    t = {"token_embedding": rng.standard_normal((V, D)), "rms_att": 1 + 0.1 * rng.standard_normal((nl, D)),
         "wq": rng.standard_normal((nl, D, D)) / D ** 0.5, "wk": rng.standard_normal((nl, Hkv * hd, D)) / D ** 0.5,
         "wv": rng.standard_normal((nl, Hkv * hd, D)) / D ** 0.5, "wo": rng.standard_normal((nl, D, D)) / D ** 0.5,
         "rms_ffn": 1 + 0.1 * rng.standard_normal((nl, D)), "w1": rng.standard_normal((nl, I, D)) / D ** 0.5,
         "w2": rng.standard_normal((nl, D, I)) / I ** 0.5, "w3": rng.standard_normal((nl, I, D)) / D ** 0.5,
         "rms_final": 1 + 0.1 * rng.standard_normal(D)}
    cos, sin = llama2c.rope_tables(S, hd)
    t["freq_cis_real"], t["freq_cis_imag"] = cos, sin
    if not shared:
        t["wcls"] = rng.standard_normal((V, D)) / D ** 0.5
    order = ["token_embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final",
             "freq_cis_real", "freq_cis_imag"] + ([] if shared else ["wcls"])
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", D, I, nl, H, Hkv, V if shared else -V, S))
        for k in order:
            f.write(np.asarray(t[k], "<f4").tobytes())
    return {k: np.asarray(v, np.float32).astype(np.float64) for k, v in t.items()}


def llama2c_forward(t, H, Hkv, tokens, eps=1e-5):
    """logits [L, V] in llama2.c's conventions (position by position, adjacent-pair RoPE)."""
    nl, D = t["rms_att"].shape
    hd, rep = D // H, H // Hkv
    rms = lambda x, w: w * x / np.sqrt(np.mean(x * x) + eps)  # noqa: E731
    L = len(tokens)
    keys = [[None] * L for _ in range(nl)]
    vals = [[None] * L for _ in range(nl)]
    out = []
    for pos, tok in enumerate(tokens):
        x = t["token_embedding"][tok].copy()
        for l in range(nl):
            xb = rms(x, t["rms_att"][l])
            q, k, v = t["wq"][l] @ xb, t["wk"][l] @ xb, t["wv"][l] @ xb
            for vec in (q, k):
                for i in range(0, vec.size, 2):  # pairs (2j, 2j+1) of each head, frequency j
                    j = (i % hd) // 2
                    ang = pos * 10000.0 ** (-2.0 * j / hd)  # as run.c computes it (float64 here)
                    c, s = np.cos(ang), np.sin(ang)
                    a, b = vec[i], vec[i + 1]
                    vec[i], vec[i + 1] = a * c - b * s, a * s + b * c
            keys[l][pos], vals[l][pos] = k, v
            o = np.zeros(D)
            for h in range(H):
                g = h // rep
                qh = q[h * hd:(h + 1) * hd]
                sc = np.array([qh @ keys[l][p][g * hd:(g + 1) * hd] for p in range(pos + 1)]) / np.sqrt(hd)
                w = np.exp(sc - sc.max())
                w /= w.sum()
                o[h * hd:(h + 1) * hd] = sum(w[p] * vals[l][p][g * hd:(g + 1) * hd] for p in range(pos + 1))
            x = x + t["wo"][l] @ o
            xb = rms(x, t["rms_ffn"][l])
            hb = t["w1"][l] @ xb
            x = x + t["w2"][l] @ (hb / (1 + np.exp(-hb)) * (t["w3"][l] @ xb))
        x = rms(x, t["rms_final"])
        out.append((t["token_embedding"] if "wcls" not in t else t["wcls"]) @ x)
    return np.array(out)


def hf_logits(ckpt, tokens, W=None):
    cfg, Wd = load_checkpoint(ckpt)
    with torch.no_grad():
        return rf.llama_forward(cfg, rf.Weights(W or Wd, ckpt), torch.tensor([tokens]), lambda *a, **k: None)[0].numpy()


def test_conversion(tmp):
    rng = np.random.default_rng(0)
    for shared, (H, Hkv) in ((True, (4, 2)), (False, (4, 4))):
        D, I, nl, V, S = 32, 48, 2, 300, 16
        name = f"convert H={H} Hkv={Hkv} shared={shared}"
        b = os.path.join(tmp, "m.bin")
        t = write_bin(b, D, I, nl, H, Hkv, V, S, shared, rng)
        tokens = [int(x) for x in rng.integers(0, V, 12)]
        want = llama2c_forward(t, H, Hkv, tokens)
        tok_bin = os.path.join(tmp, "tok.bin")
        write_tokenizer(tok_bin, V, new_schema=True)
        out = os.path.join(tmp, f"hf{shared}")
        convert_llama2c.convert(b, tok_bin, out)
        cfg, Wd = load_checkpoint(out)
        got = hf_logits(out, tokens)
        err = np.abs(got - want).max() / np.abs(want).max()
        check(name, err < 1e-10, f"(max rel logit difference {err:.1e})")
        check(name + " tied head", ("lm_head.weight" in Wd) != shared and cfg["tie_word_embeddings"] == shared)
        W = dict(Wd)  # control: q/k rows left in adjacent-pair order
        for l in range(nl):
            for n, heads in (("q_proj", H), ("k_proj", Hkv)):
                k = f"model.layers.{l}.self_attn.{n}.weight"
                W[k] = np.ascontiguousarray(W[k].reshape(heads, 2, -1, D).transpose(0, 2, 1, 3).reshape(-1, D))
        cerr = np.abs(hf_logits(out, tokens, W) - want).max() / np.abs(want).max()
        check(name + " control without permutation differs", cerr > 1e-3, f"({cerr:.1e})")


PIECES = [" ", "a", "b", "c", " a", "ab", " ab", "abc", " abc", "é"]
SCORES = [-1e9, -1.0, -2.0, -3.0, -4.0, -5.0, -3.5, -6.0, -2.5, -7.0]


def write_tokenizer(path, V=None, new_schema=True):
    """<unk>, <s>, </s>, 256 byte tokens, then PIECES (padded with 'xN' pieces up to V)."""
    pieces = [b"<unk>", b"<s>" if new_schema else b"\n<s>\n", b"</s>" if new_schema else b"\n</s>\n"]
    pieces += [(f"<0x{i:02X}>".encode() if new_schema else chr(i).encode()) for i in range(256)]
    scores = [0.0] * len(pieces)
    pieces += [p.encode() for p in PIECES]
    scores += SCORES
    while V is not None and len(pieces) < V:
        pieces.append(f"x{len(pieces)}".encode())
        scores.append(-100.0)
    if V is not None:
        pieces, scores = pieces[:V], scores[:V]
    with open(path, "wb") as f:
        f.write(struct.pack("<i", max(len(p) for p in pieces)))
        for p, s in zip(pieces, scores):
            f.write(struct.pack("<fi", s, len(p)) + p)
    return len(pieces)


def test_tokenizer(tmp):
    base = 259
    pid = {p: base + i for i, p in enumerate(PIECES)}
    for new in (True, False):
        path = os.path.join(tmp, f"tok{new}.bin")
        n = write_tokenizer(path, new_schema=new)
        tok = llama2c.Tokenizer(path, n)
        # " ab ab" -> ' ','a','b',' ','a','b'; pairs ' a' (-4) beat 'ab' (-5): merge the leftmost ' a';
        # then ' ab' (-3.5) is best; the same again on the right -> [' ab', ' ab']
        got = tok.encode("ab ab")
        check(f"encode merges (schema {'new' if new else 'old'})", got == [1, pid[" ab"], pid[" ab"]], str(got))
        got = tok.encode("abc", bos=False, eos=True)
        check("encode best-score merge order", got == [pid[" abc"], 2], str(got))
        got = tok.encode("aé", bos=False)  # 'é' is a piece; 'ü' is not -> byte fallback
        check("encode known multibyte piece", got == [pid[" a"], pid["é"]], str(got))
        got = tok.encode("ü", bos=False)
        check("encode byte fallback", got == [pid[" "], 3 + 0xC3, 3 + 0xBC], str(got))
        text = tok.decode([1, pid[" ab"], 3 + 0xC3, 3 + 0xBC, pid[" a"], 2])
        check("decode (space after BOS stripped, bytes joined)", text == "abü a", repr(text))
    bad = os.path.join(tmp, "bad.bin")
    with open(os.path.join(tmp, "tokTrue.bin"), "rb") as f:
        raw = f.read()
    at = raw.index(b"<0x00>")
    with open(bad, "wb") as f:  # byte token 0x00 spelled as 0x77
        f.write(raw[:at] + b"<0x77>" + raw[at + 6:])
    try:
        llama2c.Tokenizer(bad)
        check("malformed tokenizer refused", False)
    except llama2c.FormatError as e:
        check("malformed tokenizer refused", "bad.bin" in str(e), str(e))


def test_hf_tokenizer(tmp, ess):
    """`ess tokenize` on the directory test_conversion wrote (hand-built vocabulary, V = 300)."""
    out = os.path.join(tmp, "hfTrue")
    tok = llama2c.Tokenizer(os.path.join(out, "llama2c-tokenizer.bin"))
    for text in ("ab ab", "abc", "aé", "ü", " ab  abc\né", "cab bca x260"):
        path = os.path.join(tmp, "text.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        r = subprocess.run([ess, "tokenize", out, "--text", path], capture_output=True, text=True)
        got = [int(x) for x in r.stdout.split()] if r.returncode == 0 else r.stderr.strip()
        want = tok.encode(text)
        check(f"ess tokenize with the converted tokenizer.json: {text!r}", got == want, f"{got} vs {want}")


def test_bad_checkpoints(tmp):
    rng = np.random.default_rng(1)
    b = os.path.join(tmp, "ok.bin")
    write_bin(b, 16, 24, 1, 2, 2, 10, 8, True, rng)
    raw = open(b, "rb").read()
    cases = {"truncated.bin": raw[:-4], "header.bin": struct.pack("<7i", 16, 24, 1, 3, 3, 10, 8) + raw[28:],
             "short.bin": raw[:20]}
    for name, data in cases.items():
        p = os.path.join(tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        try:
            llama2c.read_checkpoint(p)
            check(f"bad checkpoint {name} refused", False)
        except llama2c.FormatError as e:
            check(f"bad checkpoint {name} refused", name in str(e), str(e))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_conversion(tmp)
        test_tokenizer(tmp)
        test_bad_checkpoints(tmp)
        if len(sys.argv) > 1:
            test_hf_tokenizer(tmp, sys.argv[1])
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
