#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tools/fuzz/ (clang, AddressSanitizer + UBSan) into build-fuzz/
# and fuzzes each for a time budget, starting from the seed corpus tools/fuzz/corpus/<harness>/
# (the growing corpus stays in build-fuzz/corpus/). A crash stops with its input saved in
# build-fuzz/crashes/; fix the reader, copy the input to tools/fuzz/corpus/<harness>/crash-<what>
# (ctest replays it as fuzz.<harness> from then on) and add a test naming the failure.
# usage: bash tools/fuzz.sh [SECONDS_PER_HARNESS (default 60)] [HARNESS...]
# Exit: 0 no crash, 1 a crash or a build failure, 77 skipped (no clang / libFuzzer runtime).
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -eq 0 ] && harnesses=(safetensors json config tokens operators results)

if ! command -v clang++ >/dev/null; then
  echo "fuzz: SKIPPED (not passed): clang++ is not installed (tools/setup.sh installs clang)"
  exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }\n' >"$probe/p.cpp"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" 2>"$probe/err"; then
  echo "fuzz: SKIPPED (not passed): clang cannot link libFuzzer ($(head -1 "$probe/err")); install libclang-rt-14-dev"
  exit 77
fi

export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DESS_FUZZ=ON -DESS_WERROR=ON >/dev/null || exit 1
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}" >build-fuzz/build.log 2>&1 || {
  tail -30 build-fuzz/build.log
  exit 1
}

# HDF5 inputs are a few KB even when tiny; everything else stays within libFuzzer's default 4 KB.
declare -A max_len=([operators]=32768 [results]=32768 [config]=4096 [safetensors]=4096 [json]=4096 [tokens]=4096)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
total_runs=0
mkdir -p build-fuzz/crashes
for h in "${harnesses[@]}"; do
  mkdir -p "build-fuzz/corpus/$h"
  log="build-fuzz/fuzz_$h.log"
  ./build-fuzz/fuzz_"$h" -max_total_time="$budget" -timeout=20 -rss_limit_mb=2560 -max_len="${max_len[$h]}" \
    -print_final_stats=1 -artifact_prefix="build-fuzz/crashes/$h-" \
    "build-fuzz/corpus/$h" "tools/fuzz/corpus/$h" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  total_runs=$((total_runs + ${runs:-0}))
  if [ $rc -eq 0 ]; then
    echo "fuzz $h: ok, ${runs:-?} inputs in ${budget} s ($cov), corpus $(ls "build-fuzz/corpus/$h" | wc -l) files"
  else
    echo "fuzz $h: FAILED (exit $rc) after ${runs:-?} inputs; input saved as:"
    grep -E "Test unit written to|ERROR: |SUMMARY" "$log" | head -5
    status=1
  fi
done
echo "fuzz: $total_runs inputs in all"
exit $status
