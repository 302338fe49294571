#!/usr/bin/env bash
# Builds ess and its tests with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ and
# runs the whole test suite there (unit tests, CLI tests, fuzz-corpus replays). Any sanitizer
# report fails the test that triggered it. usage: bash tools/sanitize.sh [ctest -R pattern]
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
# -O1: sanitizer builds compile faster and still run the suite in a few minutes.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DESS_SANITIZE=ON -DESS_WERROR=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" ${1:+-R "$1"}
