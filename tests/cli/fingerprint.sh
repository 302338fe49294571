#!/usr/bin/env bash
# source_sha256 of `ess analyze` results (models/fingerprint.h) equals an independent hashlib
# computation: SHA-256 over "<file> <sha256>\n" of config.json and then each weight file (the single
# model.safetensors, or the shards in order of first appearance in the index's weight_map sorted by
# tensor name) — for a single-file and a sharded checkpoint. A changed weight byte changes it.
set -euo pipefail
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ck in tiny-mamba tiny-llama; do
  "$ESS" analyze "$root/data/checkpoints/$ck" --tokens "$root/data/checkpoints/$ck/tokens.txt" --indices 1 \
    -o "$tmp/$ck.h5" --quiet >/dev/null
done
cp -r "$root/data/checkpoints/tiny-mamba" "$tmp/changed"
$PY - "$tmp/changed/model.safetensors" <<'PYEOF'
import struct, sys
p = sys.argv[1]
raw = bytearray(open(p, "rb").read())
raw[-2] ^= 1  # a low mantissa bit of the last weight (any float dtype): a tiny change, header intact
open(p, "wb").write(raw)
PYEOF
"$ESS" analyze "$tmp/changed" --tokens "$tmp/changed/tokens.txt" --indices 1 -o "$tmp/changed.h5" --quiet >/dev/null
$PY - "$root/data/checkpoints" "$tmp" <<'PYEOF'
import hashlib, json, os, sys
import h5py

ckpts, tmp = sys.argv[1], sys.argv[2]


def expected(d):
    files = ["config.json"]
    if os.path.exists(os.path.join(d, "model.safetensors")):
        files.append("model.safetensors")
    else:
        wm = json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"]
        for name in sorted(wm):
            if wm[name] not in files:
                files.append(wm[name])
    lines = "".join(f"{f} {hashlib.sha256(open(os.path.join(d, f), 'rb').read()).hexdigest()}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest(), len(files) - 1


got = {}
for name, d in [("tiny-mamba", os.path.join(ckpts, "tiny-mamba")), ("tiny-llama", os.path.join(ckpts, "tiny-llama")),
                ("changed", os.path.join(tmp, "changed"))]:
    with h5py.File(os.path.join(tmp, name + ".h5")) as f:
        got[name] = f.attrs["source_sha256"]
        if isinstance(got[name], bytes):
            got[name] = got[name].decode()
    want, shards = expected(d)
    assert got[name] == want, (name, got[name], want)
    print(f"ok: {name}: source_sha256 over config.json and {shards} weight file(s) matches hashlib")
assert got["changed"] != got["tiny-mamba"], "one changed weight byte must change the fingerprint"
print("ok: a changed weight byte changes the fingerprint")
PYEOF
