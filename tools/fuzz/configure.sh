#!/usr/bin/env bash
# Sourced by tools/sanitize.sh and tools/fuzz.sh: configures the one clang ASan + UBSan build that
# serves both (build-fuzz/: the test suite, and the harnesses as libFuzzer binaries), so CI
# compiles once. Both scripts must configure it identically, or the second would rebuild it all.
# -O1 and line tables only: the sanitizer build compiles ≈2× faster than -O2 -g, runs the suite
# about as fast, and its reports still name file:line (docs/reliability.md, measured figures).
# Defines: ess_fuzz_probe (0 when clang links libFuzzer + both sanitizers), ess_fuzz_configure DIR.
ess_fuzz_flags="-O1 -gline-tables-only -DNDEBUG"
ess_fuzz_probe() {
  command -v clang++ >/dev/null || return 1
  local probe rc
  probe=$(mktemp -d)
  printf 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }\n' >"$probe/p.cpp"
  clang++ -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" 2>"$probe/err"
  rc=$?
  [ $rc -ne 0 ] && ess_fuzz_probe_error=$(head -1 "$probe/err")
  rm -rf "$probe"
  return $rc
}
ess_fuzz_configure() {
  cmake -S . -B "$1" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="$ess_fuzz_flags" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$ess_fuzz_flags" \
    -DESS_FUZZ=ON -DESS_WERROR=ON -DESS_UNITY=ON >/dev/null
}
# Readable reports: ASan/UBSan look for llvm-symbolizer on PATH; Debian's llvm-14 ships it here.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && ! command -v llvm-symbolizer >/dev/null &&
  [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
  export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi
