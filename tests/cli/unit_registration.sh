#!/usr/bin/env bash
# Every doctest case is one ctest test that runs exactly that case. ctest's doctest_discover_tests
# keeps test names in a CMake list, so a ';' in a TEST_CASE name split it into two tests whose
# filters matched no case at all, and doctest passes a run with no case in it: 14 cases were never
# run by ctest (one of them had been failing since it was written). This test asks ctest for every
# registered command (`ctest --show-only=json-v1`), runs each unit-test command with --count, and
# fails unless each selects exactly one case and together they are every case of ess_tests.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=$(dirname "$1")
[ -x "$build/ess_tests" ] || { echo "no $build/ess_tests"; exit 1; }
ctest --test-dir "$build" --show-only=json-v1 > "${TMPDIR:-/tmp}/ess_ctest_$$.json" || exit 1
trap 'rm -f "${TMPDIR:-/tmp}/ess_ctest_$$.json"' EXIT
/usr/bin/python3 - "$build/ess_tests" "${TMPDIR:-/tmp}/ess_ctest_$$.json" <<'EOF'
import json, os, re, subprocess, sys

binary, listing = sys.argv[1], sys.argv[2]
tests = json.load(open(listing))["tests"]
unit = [t for t in tests if t.get("command") and os.path.basename(t["command"][0]) == "ess_tests"]


def count(args):
    out = subprocess.run([binary, *args, "--count", "--no-colors"], capture_output=True, text=True).stdout
    found = re.search(r"passing the current filters: (\d+)", out)
    return int(found.group(1)) if found else -1


total = count([])
bad = [t["name"] for t in unit if count(t["command"][1:]) != 1]
for name in bad:
    print(f"ctest test {name!r} does not select exactly one doctest case (a ';' in a TEST_CASE name?)")
if len(unit) != total:
    print(f"ctest has {len(unit)} unit tests, ess_tests has {total} cases")
if total < 1:
    print("ess_tests reports no test case")
if bad or len(unit) != total or total < 1:
    sys.exit(1)
print(f"{total} doctest cases, each one ctest test")
EOF
