#!/usr/bin/python3
"""One test fixture for `ess analyze`: a tiny random checkpoint, its tokens and expected outputs.

    make_fixture.py ARCH [OUTDIR] [--seed S] [make_checkpoints.py options …]

Writes OUTDIR (default data/checkpoints/tiny-ARCH, ARCH with '_' as '-') with
  config.json + model.safetensors (or shards)   make_checkpoints.py OUTDIR --arch ARCH --seed S …
  tokens.txt                                    2 sequences of 24 ids below the vocabulary (seed S)
  expected.h5                                   reference_forward.py --check (logits + operators)
tests/test_models.cpp and tests/cli/analyze.sh pick every such directory up; the unit tests fail
while a registered architecture has no fixture. Exits 1 when the reference's own operator check
fails. Only /usr/bin/python3 with numpy, h5py and torch is needed.
"""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def main(argv):
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    arch, rest = argv[0], argv[1:]
    out = os.path.join(ROOT, "data", "checkpoints", "tiny-" + arch.replace("_", "-"))
    if rest and not rest[0].startswith("-"):
        out, rest = rest[0], rest[1:]
    seed = int(rest[rest.index("--seed") + 1]) if "--seed" in rest else 0
    if "--seed" not in rest:
        rest += ["--seed", str(seed)]
    py = sys.executable
    subprocess.run([py, os.path.join(HERE, "make_checkpoints.py"), out, "--arch", arch, *rest], check=True)
    vocab = json.load(open(os.path.join(out, "config.json")))["vocab_size"]
    rng = np.random.default_rng(seed)
    tokens = os.path.join(out, "tokens.txt")
    with open(tokens, "w") as f:
        for _ in range(2):
            f.write(" ".join(str(int(v)) for v in rng.integers(0, vocab, 24)) + "\n")
    r = subprocess.run([py, os.path.join(HERE, "reference_forward.py"), out, "--tokens", tokens, "-o",
                        os.path.join(out, "expected.h5"), "--check"])
    return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
