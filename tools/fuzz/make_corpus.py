"""Writes the fuzzers' seed corpus (tools/fuzz/corpus/<harness>/seed-*): tiny valid inputs of every
kind, plus a few near-misses. Regression inputs (crash-*, found by tools/fuzz.sh) live beside the
seeds and are never overwritten. Run: /usr/bin/python3 tools/fuzz/make_corpus.py [ess binary]
"""
import json
import os
import struct
import subprocess
import sys

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
sys.path.insert(0, os.path.join(root, "tools", "python"))
from ess_writer import OperatorFileWriter  # noqa: E402

corpus = os.path.join(here, "corpus")
rng = np.random.default_rng(9)


def put(harness, name, data):
    d = os.path.join(corpus, harness)
    os.makedirs(d, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(os.path.join(d, "seed-" + name), mode) as f:
        f.write(data)


# safetensors: every dtype ess converts, metadata, an empty file, a scalar, near-misses.
def safetensors(tensors, metadata=None, pad=b""):
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode() + pad
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


f32 = rng.standard_normal(6).astype("<f4").tobytes()
put("safetensors", "dtypes", safetensors({
    "a": ("F32", [2, 3], f32), "b": ("F16", [3], np.array([1, -2, 65504], "<f2").tobytes()),
    "c": ("BF16", [2], b"\x80\x3f\x00\xc0"), "d": ("F64", [], struct.pack("<d", 3.5)),
    "e": ("I8", [2], b"\x01\x02")}, {"format": "pt"}))
put("safetensors", "empty", safetensors({}))
put("safetensors", "padded", safetensors({"w": ("F32", [1], f32[:4])}, pad=b"   "))
put("safetensors", "zero_dim", safetensors({"z": ("F32", [0, 4], b"")}))

# json: first byte = options (bit 0 unique keys, bit 1 Python literals, the rest the depth limit).
put("json", "config", bytes([0xff]) + open(os.path.join(root, "data/checkpoints/tiny-llama/config.json"), "rb").read())
put("json", "literals", bytes([2 | (8 << 2)]) + b'{"a": [Infinity, -Infinity, NaN, "NaN"], "b": {"c": 1e-5}}')
put("json", "nested", bytes([1 | (3 << 2)]) + b'{"a": {"b": [1, 2, {"c": null}]}, "a2": true}')
put("json", "index", bytes([1 | (63 << 2)]) + open(os.path.join(root, "data/checkpoints/tiny-llama/model.safetensors.index.json"), "rb").read())

# tokens: vocabulary 100.
put("tokens", "two", "1 2 3 4\n5 6 7 8\n")
put("tokens", "blank_lines", "\n 10   11\t12\r\n\n13 14 15\n")
put("tokens", "no_newline", "99 0")

# config: first byte picks the checkpoint (fuzz_config.cpp's order), then config.json.
for k, name in enumerate(["tiny-mamba", "tiny-falcon-mamba", "tiny-mamba2", "tiny-llama", "tiny-mistral", "tiny-gla"]):
    put("config", name, bytes([k]) + open(os.path.join(root, "data/checkpoints", name, "config.json"), "rb").read())

# operators: one tiny layer of every family (L = 6, B = 1, two channels/heads).
L, B, C, d, N = 6, 1, 2, 3, 2
r = lambda *s: rng.standard_normal(s)
ops = os.path.join(corpus, "operators")
os.makedirs(ops, exist_ok=True)
families = {
    "dense": lambda w: w.add_dense("x", np.tril(r(B, C, L, L)), layer_index=0),
    "softmax_attention": lambda w: w.add_softmax_attention("x", r(B, C, L, d), r(B, C, L, d), window=3, layer_index=0),
    "softmax_mask": lambda w: w.add_softmax_attention("x", r(B, C, L, d), r(B, C, L, d),
                                                      mask=np.tril(np.ones((L, L), np.uint8)), layer_index=0),
    "linear_attention": lambda w: w.add_linear_attention("x", r(B, C, L, d), r(B, C, L, d), normalize=True, layer_index=0),
    "retention": lambda w: w.add_retention("x", r(B, C, L, d), r(B, C, L, d), np.array([0.9, 0.5]), layer_index=0),
    "gla": lambda w: w.add_gla("x", r(B, C, L, d), r(B, C, L, d), -np.abs(r(B, C, L, d)), layer_index=0),
    "delta_net": lambda w: w.add_delta_net("x", r(B, C, L, d), r(B, C, L, d), np.abs(r(B, C, L)) % 1,
                                           log_gate=-np.abs(r(B, C, L)), layer_index=0),
    "mamba": lambda w: w.add_mamba("x", np.abs(r(B, C, L)), -np.abs(r(C, N)), r(B, L, N), r(B, L, N), layer_index=0),
    "mamba2": lambda w: w.add_mamba2("x", np.abs(r(B, C, L)), -np.abs(r(C)), r(B, 1, L, N), r(B, 1, L, N), layer_index=0),
    "s4d": lambda w: w.add_s4d("x", -np.abs(r(C, N)), r(C, N), r(C, N), a_im=r(C, N), seq_len=L, layer_index=0),
    "conv": lambda w: w.add_conv("x", r(C, 3), pre_gate=r(B, C, L), post_gate=r(B, C, L), layer_index=0),
    "conv_ungated": lambda w: w.add_conv("x", r(C, 3), seq_len=L, layer_index=0),
}
for name, add in families.items():
    path = os.path.join(ops, "seed-" + name)
    with OperatorFileWriter(path) as w:
        add(w)

# results: computed by ess from one of the operator seeds.
if len(sys.argv) > 1:
    res = os.path.join(corpus, "results")
    os.makedirs(res, exist_ok=True)
    for name in ["mamba", "softmax_attention"]:
        subprocess.run([sys.argv[1], "compute", os.path.join(ops, "seed-" + name), "-o", os.path.join(res, "seed-" + name),
                        "--keep-sigma", "2", "--quiet"], check=True, stdout=subprocess.DEVNULL)

# tokenizer: first byte even = tokenizer.json, odd = text encoded with data/tokenizers/tiny-sp.
def byte_level_chars():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


vocab = {c: i for i, c in enumerate(byte_level_chars())}
for merged in ["Ġt", "he", "Ġthe"]:
    vocab[merged] = len(vocab)
byte_level = {"version": "1.0", "added_tokens": [{"id": len(vocab), "content": "<|endoftext|>", "special": True,
                                                  "normalized": False, "single_word": False, "lstrip": False,
                                                  "rstrip": False}],
              "normalizer": {"type": "NFC"},
              "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
              "post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
              "model": {"type": "BPE", "vocab": vocab, "merges": ["Ġ t", "h e", "Ġt he"]}}
put("tokenizer", "byte_level", bytes([0]) + json.dumps(byte_level).encode())
put("tokenizer", "tiny_sp", bytes([2]) + open(os.path.join(root, "data/tokenizers/tiny-sp/tokenizer.json"), "rb").read())
put("tokenizer", "text", bytes([1]) + "Once upon a time, a little girl.\n<|doc|>\nThe end ✓ ünï\r\n".encode())
put("tokenizer", "text_delimiters", bytes([3]) + b"<|doc|>\n<|doc|>\r\n\n\n<|doc|>")
