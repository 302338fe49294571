#!/usr/bin/env bash
# Builds ess and its tests with AddressSanitizer + UndefinedBehaviorSanitizer and runs the whole
# test suite there (unit tests, CLI tests, fuzz-corpus replays); any sanitizer report fails the
# test that triggered it. With clang and its libFuzzer runtime the build is build-fuzz/ (ESS_FUZZ:
# the same objects serve tools/fuzz.sh, so CI compiles once); otherwise gcc into build-asan/.
# usage: bash tools/sanitize.sh [ctest -R pattern]
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }\n' >"$probe/p.cpp"
if command -v clang++ >/dev/null && clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" 2>/dev/null; then
  dir=build-fuzz
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DESS_FUZZ=ON -DESS_WERROR=ON >/dev/null
else
  dir=build-asan
  # -O1: sanitizer builds compile faster and still run the suite in a few minutes.
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
    -DESS_SANITIZE=ON -DESS_WERROR=ON >/dev/null
fi
cmake --build "$dir" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
echo "sanitize: running the test suite in $dir/ (ASan + UBSan)"
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)" ${1:+-R "$1"}
