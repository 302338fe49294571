#!/usr/bin/python3
"""Self-checks of the checkpoint generator and the reference forward pass; with --ess, also
`ess analyze` against them.

    check_reference.py [--ess build/ess] [--keep DIR] [--arch ARCH …]

For every architecture and several variants (dtypes, sharding, tied heads, RoPE formats):
  1. make_checkpoints.py writes a tiny checkpoint; reference_forward.py runs it with --check
     (every operator's closed-form dense T applied to the scan input equals the forward's own
     recurrence / attention output, 1e-10 relative);
  2. the same seed written sharded / unsharded gives bit-identical logits, and a BF16 / F16 copy
     gives logits close to the F32 ones (the forward reads what is stored);
  3. the expected file is a valid operator file: ess_reference.py computes its ESS;
  4. with --ess: `ess compute EXPECTED.h5` and `ess analyze CKPT --tokens` both match
     ess_reference.py (tests/cli/compare_results.py rules), and analyze's predictions (/model:
     next-token log-probabilities, argmax, loss, perplexity) match the reference's logits.
Prints one line per check and 'N passed, N failed'; exit 1 on any failure.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PY = sys.executable
VARIANTS = [
    ("mamba", []), ("mamba", ["--dtype", "BF16", "--tie", "no"]),
    ("falcon_mamba", []), ("falcon_mamba", ["--dtype", "F16", "--sharded"]),
    ("mamba2", []), ("mamba2", ["--tie", "yes", "--sharded", "--shards", "3"]),
    ("llama", []), ("llama", ["--llama-rope", "linear", "--tie", "yes"]), ("llama", ["--llama-rope", "default"]),
    ("llama", ["--rope-format", "v5"]),
    ("mistral", []), ("mistral", ["--dtype", "BF16"]),
    ("gla", []), ("gla", ["--sharded"]),
    ("gpt2", []), ("gpt2", ["--tie", "no", "--dtype", "BF16"]), ("gpt2", ["--gpt2-names", "gpt2model"]),
    ("gpt_neox", ["--tie", "yes", "--sharded"]), ("gpt_neox_sequential", ["--dtype", "F16"]),
    ("phi", []), ("phi", ["--tie", "yes", "--sharded", "--shards", "3"]),
    ("qwen2", ["--dtype", "BF16"]), ("qwen3", ["--tie", "yes"]), ("qwen3", ["--sharded"]),
    ("gemma2", []), ("gemma2", ["--tie", "no", "--dtype", "BF16"]),
    ("lfm2", []), ("lfm2", ["--conv-bias", "--tie", "no", "--dtype", "BF16"]), ("lfm2", ["--sharded"]),
    ("falcon_h1", []), ("falcon_h1", ["--mamba-norm", "before", "--biases", "--tie", "yes"]),
    ("falcon_h1", ["--mamba-norm", "none", "--dtype", "BF16", "--sharded"]),
    ("jamba", []), ("jamba", ["--dtype", "BF16", "--tie", "yes", "--sharded", "--shards", "3"]),
]
passed, failed = 0, []


def report(name, ok, detail=""):
    global passed
    print(f"{'ok  ' if ok else 'FAIL'} {name} {detail}")
    if ok:
        passed += 1
    else:
        failed.append(name)


def predictions_match(results, expected):
    """`ess analyze`'s /model against the reference's float64 logits: log-softmax at the next token
    (1e-9), argmax, loss = −mean over every scored position, perplexity = exp(loss)."""
    with h5py.File(results) as a, h5py.File(expected) as e:
        if "model" not in a:
            return False, "no /model group"
        g, ids, logits = a["model"], e["tokens"][...], e["logits"][...]
        lp, am, loss, ppl = g["logprobs"][...], g["argmax"][...], g.attrs["loss"], g.attrs["perplexity"]
        same_ids = np.array_equal(g["input_ids"][...], ids)
    m = logits.max(-1, keepdims=True)
    lsm = (logits - m) - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    ref = np.take_along_axis(lsm[:, :-1, :], ids[:, 1:, None], 2)[..., 0]
    err = float(np.abs(lp[:, :-1] - ref).max())
    want = -float(ref.mean())
    ok = (same_ids and np.array_equal(am, lsm.argmax(-1)) and err <= 1e-9 and abs(loss - want) <= 1e-12 * want
          and abs(ppl - np.exp(want)) <= 1e-12 * np.exp(want))
    return ok, f"(logprobs to {err:.1e}, loss {loss:.6f} vs {want:.6f})"


def sh(*cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ess", help="path of the ess binary to check analyze/compute against the reference")
    ap.add_argument("--keep", help="directory to keep the checkpoints and expected files in")
    ap.add_argument("--arch", nargs="+", help="only the variants of these architectures (make_checkpoints names)")
    args = ap.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="ess-refcheck-")
    os.makedirs(work, exist_ok=True)
    rng = np.random.default_rng(11)
    tok = os.path.join(work, "tokens.txt")
    with open(tok, "w") as f:
        for _ in range(2):
            f.write(" ".join(str(int(v)) for v in rng.integers(0, 96, 24)) + "\n")
    make = os.path.join(HERE, "make_checkpoints.py")
    fwd = os.path.join(HERE, "reference_forward.py")
    ref = os.path.join(ROOT, "tools", "python", "ess_reference.py")
    cmp_ = os.path.join(ROOT, "tests", "cli", "compare_results.py")
    try:
        for n, (arch, extra) in enumerate(VARIANTS):
            if args.arch and arch not in args.arch:
                continue
            tag = f"{arch}{''.join(extra).replace('--', '-')}"
            ck, exp = os.path.join(work, f"ck_{n}"), os.path.join(work, f"expected_{n}.h5")
            rc, out = sh(PY, make, ck, "--arch", arch, "--seed", n, *extra)
            if rc:
                report(f"{tag}: make", False, out[-500:])
                continue
            size = max(os.path.getsize(os.path.join(ck, x)) for x in os.listdir(ck))
            report(f"{tag}: files < 1 MB", size < 1 << 20, f"(largest {size} bytes)")
            rc, out = sh(PY, fwd, ck, "--tokens", tok, "-o", exp, "--check")
            report(f"{tag}: forward --check", rc == 0, out.strip().splitlines()[-1] if rc else "")
            if rc:
                continue
            res = os.path.join(work, f"ref_{n}.h5")
            rc, out = sh(PY, ref, exp, "-o", res)
            report(f"{tag}: ess_reference on expected file", rc == 0, out[-300:])
            if "--sharded" in extra or "--dtype" in extra:  # same seed, plain F32 single file
                base, bexp = os.path.join(work, f"ck_{n}_f32"), os.path.join(work, f"expected_{n}_f32.h5")
                plain = [a for a in extra if a not in ("--sharded", "--shards", "3")]
                if "--dtype" in plain:
                    i = plain.index("--dtype")
                    plain = plain[:i] + plain[i + 2:]
                sh(PY, make, base, "--arch", arch, "--seed", n, *plain)
                sh(PY, fwd, base, "--tokens", tok, "-o", bexp)
                with h5py.File(exp) as a, h5py.File(bexp) as b:
                    la, lb = a["logits"][...], b["logits"][...]
                if "--dtype" in extra:
                    rel = np.abs(la - lb).max() / np.abs(lb).max()
                    report(f"{tag}: logits near the F32 copy", rel < 0.1, f"(max rel diff {rel:.1e})")
                else:
                    report(f"{tag}: sharded logits identical to single file", np.array_equal(la, lb))
            if args.ess:
                for what, cmd in (("ess compute", [args.ess, "compute", exp]),
                                  ("ess analyze", [args.ess, "analyze", ck, "--tokens", tok])):
                    outp = os.path.join(work, f"ess_{n}_{what.split()[1]}.h5")
                    rc, out = sh(*cmd, "-o", outp, "--quiet")
                    if rc:
                        report(f"{tag}: {what}", False, f"rc={rc}: {out.strip()[-300:]}")
                        continue
                    rc, out = sh(PY, cmp_, outp, res)
                    report(f"{tag}: {what} matches reference", rc == 0, "" if rc == 0 else out.strip())
                    if what == "ess analyze":
                        ok, detail = predictions_match(outp, exp)
                        report(f"{tag}: ess analyze predictions (/model) match reference", ok, detail)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
