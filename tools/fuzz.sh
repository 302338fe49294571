#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tools/fuzz/ (clang, AddressSanitizer + UBSan) into build-fuzz/
# and fuzzes each for a time budget, starting from the seed corpus tools/fuzz/corpus/<harness>/
# (the growing corpus stays in build-fuzz/corpus/). A crash stops with its input saved in
# build-fuzz/crashes/; fix the reader, copy the input to tools/fuzz/corpus/<harness>/crash-<what>
# (ctest replays it as fuzz.<harness> from then on) and add a test naming the failure.
# The harnesses run side by side, ESS_FUZZ_JOBS at a time (default: the number of cores), each on
# one core for its whole budget, so the wall time is about ceil(harnesses / jobs) × SECONDS.
# usage: bash tools/fuzz.sh [SECONDS_PER_HARNESS (default 60)] [HARNESS...]
# Exit: 0 no crash, 1 a crash or a build failure, 77 skipped (no clang / libFuzzer runtime).
set -uo pipefail
cd "$(dirname "$0")/.."
budget=${1:-60}
shift || true
# libFuzzer reads -max_total_time=0 as "no limit": refuse it (and anything not a whole number).
if ! [[ $budget =~ ^[0-9]+$ ]] || [ "$budget" -lt 1 ]; then
  echo "fuzz: the budget must be a whole number of seconds ≥ 1, got '$budget'" >&2
  exit 2
fi
harnesses=("$@")
# The HDF5 harnesses first: their saved inputs are judged after the budget (≈ 8 s each), and started
# last they would leave one core idle at the end while the other judges.
[ ${#harnesses[@]} -eq 0 ] && harnesses=(operators results safetensors json config tokens tokenizer)

# shellcheck source=tools/fuzz/configure.sh
source tools/fuzz/configure.sh
if ! command -v clang++ >/dev/null; then
  echo "fuzz: SKIPPED (not passed): clang++ is not installed (tools/setup.sh installs clang)"
  exit 77
fi
if ! ess_fuzz_probe; then
  echo "fuzz: SKIPPED (not passed): clang cannot link libFuzzer ($ess_fuzz_probe_error); install libclang-rt-14-dev"
  exit 77
fi

export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD}
ess_fuzz_configure build-fuzz || exit 1
targets=()
for h in "${harnesses[@]}"; do targets+=("fuzz_$h"); done
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}" >build-fuzz/build.log 2>&1 || {
  tail -30 build-fuzz/build.log
  exit 1
}

# HDF5 inputs are a few KB even when tiny; everything else stays within libFuzzer's default 4 KB.
declare -A max_len=([operators]=32768 [results]=32768 [config]=4096 [safetensors]=4096 [json]=4096 [tokens]=4096 [tokenizer]=8192)
# HDF5 1.10 itself loops forever or faults on some corrupt files (docs/reliability.md); the ess CLI
# contains that (exit 3 naming the file). For the HDF5 harnesses the fuzzer keeps going past
# timeouts and crashes (fork mode), and each input it saved is then run through the ess CLI
# (build/ess, a normal build): handled = exit 0/2/3/4 within 90 s, no signal. Anything else fails.
declare -A cli=([operators]="compute INPUT -o OUTPUT --quiet" [results]="report INPUT")
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
mkdir -p build-fuzz/crashes build-fuzz/hdf5-library-bugs build-fuzz/results
for h in "${harnesses[@]}"; do
  if [ -n "${cli[$h]:-}" ] && [ ! -x build/ess ]; then bash tools/build.sh >/dev/null || exit 1; fi
done

# fuzz_one HARNESS: fuzzes it for the budget, judges what it saved; prints one verdict (several
# lines on failure) and returns 0 (no bug), 1 (a bug). Files of its own only: runs side by side.
fuzz_one() {
  local h=$1 log="build-fuzz/fuzz_$1.log" asan rc runs cov
  mkdir -p "build-fuzz/corpus/$h"
  local args=(-max_total_time="$budget" -timeout=20 -rss_limit_mb=2560 -max_len="${max_len[$h]}" -print_final_stats=1
              -artifact_prefix="build-fuzz/crashes/$h-")
  if [ -n "${cli[$h]:-}" ]; then
    args+=(-fork=1 -ignore_timeouts=1 -ignore_crashes=1 -ignore_ooms=0 -timeout=3)
    asan=detect_leaks=0:allocator_may_return_null=1  # libhdf5 leaks on its error paths
  else
    asan=detect_leaks=1:allocator_may_return_null=1
  fi
  ASAN_OPTIONS=${ASAN_OPTIONS:-$asan} ./build-fuzz/fuzz_"$h" "${args[@]}" "build-fuzz/corpus/$h" "tools/fuzz/corpus/$h" \
    >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  [ -z "$runs" ] && runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
  echo "${runs:-0}" >"build-fuzz/results/$h.runs"
  if [ -n "${cli[$h]:-}" ]; then
    local bad=0 contained=0 art a first cmd crc replay="build-fuzz/replay_$h.log" err="build-fuzz/cli_$h.err"
    for art in $(ls build-fuzz/crashes | grep "^$h-"); do
      a="build-fuzz/crashes/$art"
      [ -e "build-fuzz/hdf5-library-bugs/$art" ] && continue
      # Whose fault? Replay it in the sanitized harness: a UBSan report, or a first stack frame
      # outside libhdf5, is a bug of ours whatever the CLI does with it. An explicit malloc limit
      # makes one huge allocation report the stack that asked for it (an RSS-limit report shows
      # only the largest live allocations, often libFuzzer's own, down to main: no culprit).
      # The fuzzer saved as timeouts the inputs that took over 3 s (-timeout=3 above): a 4 s replay
      # still catches their stall and its stack, without the 12 s a 10 s timeout took per input.
      ASAN_OPTIONS=detect_leaks=0 timeout 120 ./build-fuzz/fuzz_"$h" -runs=1 -timeout=4 -rss_limit_mb=2048 \
        -malloc_limit_mb=2048 "$a" >"$replay" 2>&1
      # The first frame that is libhdf5's or ours (our namespace or sources): libc (memcpy, named
      # by its own sources when it has debug info), the sanitizers and libFuzzer are neither.
      first=$(grep -E '^ +#[0-9]+ ' "$replay" |
        grep -E 'libhdf5|ess::|\.\./(libess|operators|models|analysis|tools|tests)/' | head -1)
      if grep -q "runtime error:" "$replay" || { [ -n "$first" ] && [[ "$first" != *libhdf5* ]]; }; then
        echo "fuzz $h: $a: a bug in ess, not in libhdf5:"
        grep -E "runtime error:|ERROR:|SUMMARY" "$replay" | head -3
        echo "    first frame: $first"
        bad=$((bad + 1))
        continue
      fi
      cmd=${cli[$h]//INPUT/$a}
      cmd=${cmd//OUTPUT/build-fuzz/cli-out-$h.h5}
      # A stalled HDF5 call on a file of a few KB: 3 s is plenty (tests/cli/reliability.sh uses 2).
      # shellcheck disable=SC2086
      ESS_HDF5_TIMEOUT=3 timeout 90 build/ess $cmd >/dev/null 2>"$err"
      crc=$?
      if [ $crc -le 4 ] && [ $crc != 1 ]; then
        contained=$((contained + 1))
        cp "$a" build-fuzz/hdf5-library-bugs/
      else
        echo "fuzz $h: $a: ess $cmd -> exit $crc: $(head -c 300 "$err")"
        bad=$((bad + 1))
      fi
    done
    if [ $bad = 0 ]; then
      echo "fuzz $h: ok, ${runs:-?} inputs in ${budget} s ($cov); $contained input(s) that stall or crash" \
        "libhdf5 itself are handled by ess (exit ≤ 4; copies in build-fuzz/hdf5-library-bugs/)"
      return 0
    fi
    echo "fuzz $h: FAILED: $bad saved input(s) not handled by the ess CLI (above)"
    return 1
  elif [ $rc -eq 0 ]; then
    echo "fuzz $h: ok, ${runs:-?} inputs in ${budget} s ($cov), corpus $(ls "build-fuzz/corpus/$h" | wc -l) files"
    return 0
  fi
  echo "fuzz $h: FAILED (exit $rc) after ${runs:-?} inputs; input saved as:"
  grep -E "Test unit written to|ERROR: |SUMMARY" "$log" | head -5
  return 1
}

jobs=${ESS_FUZZ_JOBS:-$(nproc)}
start=$(date +%s)
pids=()
for h in "${harnesses[@]}"; do
  rm -f "build-fuzz/results/$h".*
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  (
    fuzz_one "$h" >"build-fuzz/results/$h.out" 2>&1
    echo $? >"build-fuzz/results/$h.rc"
  ) &
  pids+=($!)
done
wait "${pids[@]}" 2>/dev/null || true
status=0
total_runs=0
for h in "${harnesses[@]}"; do
  cat "build-fuzz/results/$h.out" 2>/dev/null || echo "fuzz $h: FAILED (no result)"
  [ "$(cat "build-fuzz/results/$h.rc" 2>/dev/null)" = 0 ] || status=1
  total_runs=$((total_runs + $(cat "build-fuzz/results/$h.runs" 2>/dev/null || echo 0)))
done
echo "fuzz: $total_runs inputs in all, ${#harnesses[@]} harness(es) × ${budget} s, $jobs at a time:" \
  "$(($(date +%s) - start)) s"
exit $status
