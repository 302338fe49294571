#!/usr/bin/env bash
# Builds ess and its tests with AddressSanitizer + UndefinedBehaviorSanitizer and runs the whole
# test suite there (unit tests, CLI tests, fuzz-corpus replays); any sanitizer report fails the
# test that triggered it. With clang and its libFuzzer runtime the build is build-fuzz/ (ESS_FUZZ:
# the same objects serve tools/fuzz.sh, so CI compiles once); otherwise gcc into build-asan/.
# Left out here (they run in the normal suite, tools/test.sh), as they exercise no reader or writer
# the other tests do not and take most of the sanitizer suite's time (ASan + UBSan run 3-10×
# slower): the tokenizer reference (Node.js + several MB of text), the real checkpoint, its text
# input and its PyTorch reference (a 60 MB model's forward pass), the notebooks (Jupyter) and the
# streaming memory test (16 layers × 16384 tokens; it compares peak RSS, which ASan's shadow memory
# and quarantine distort), cli.findings (`ess study` over the 34 zoo checkpoints: 346 s under ASan
# against 62 s, while cli.study and cli.zoo run the same reader and study code on a few) and the
# lanczos warm/cold-start sweep (282 s against 10 s: many lengths × blocks × start strategies of one
# numerical path that the other lanczos tests also run under the sanitizers), and for the same
# reason its sweep over the bench operators (276 s against 14 s; 11 cases × 3 lengths × 2 modes). Also left out:
# cli.layering, cli.format and cli.unit_registration, which check the sources and the build (include
# rules, clang-format, ctest's registration of the unit tests), not the program. ESS_SANITIZE_ALL=1 runs them all.
# usage: bash tools/sanitize.sh [ctest -R pattern]
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
# shellcheck source=tools/fuzz/configure.sh
source tools/fuzz/configure.sh
if ess_fuzz_probe; then
  dir=build-fuzz
  ess_fuzz_configure "$dir"
else
  dir=build-asan
  # -O1 -g1: sanitizer builds compile faster and still run the suite in a few minutes.
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
    -DESS_SANITIZE=ON -DESS_WERROR=ON -DESS_UNITY=ON >/dev/null
fi
build_start=$(date +%s)
cmake --build "$dir" -j"$(nproc)"
echo "sanitize: build took $(($(date +%s) - build_start)) s"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:suppressions=$PWD/tools/fuzz/asan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "sanitize: running the test suite in $dir/ (ASan + UBSan)"
exclude='^(cli\.(tokenizer_reference|real_checkpoint|real_checkpoint_reference|real_checkpoint_text|notebooks|streaming_memory|findings|layering|format|unit_registration)|lanczos engine: (warm and cold starts|bench operators at several L).*)$'
[ "${ESS_SANITIZE_ALL:-0}" = 1 ] && exclude='^$'
start=$(date +%s)
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" -E "$exclude" ${1:+-R "$1"}
echo "sanitize: test suite took $(($(date +%s) - start)) s"
