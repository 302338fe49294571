#!/usr/bin/env bash
# Configures and builds ess (Release) into build/, as a unity build (ESS_UNITY, CMakeLists.txt: the
# whole build in about half the time; pass -DESS_UNITY=OFF when editing and rebuilding often).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DESS_UNITY=ON "$@" >/dev/null
cmake --build build -j"$(nproc)"
