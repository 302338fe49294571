# Sourced by CLI tests that need something tools/setup.sh installs. `unavailable WHAT [HINT]`: the
# test is skipped (exit 77, reported by ctest as skipped, never as passed), except under CI=true,
# where CI must have installed it and the test fails.
unavailable() {
  if [ "${CI:-}" = true ]; then echo "FAIL: $1 (CI must install it: tools/setup.sh)"; exit 1; fi
  echo "SKIP: $1${2:+ ($2)}"; exit 77
}
