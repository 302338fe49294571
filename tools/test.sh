#!/usr/bin/env bash
# Installs what the build and the tests need (tools/setup.sh: Debian packages, the Node.js tokenizer
# reference; nothing when they are there), builds ess and runs every test (doctest unit tests, CLI
# end-to-end tests, notebooks) via ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bash tools/build.sh -DESS_WERROR=ON
ctest --test-dir build --output-on-failure -j"$(nproc)"
