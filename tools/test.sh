#!/usr/bin/env bash
# Builds ess and runs every test (doctest unit tests, CLI end-to-end tests, notebooks) via ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh -DESS_WERROR=ON
ctest --test-dir build --output-on-failure -j"$(nproc)"
