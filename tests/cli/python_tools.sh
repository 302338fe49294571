#!/usr/bin/env bash
# The Python side: dense_T (the independent reference) against explicit recurrences, the writer's
# validation and round trip, and the forward-hook export example end to end through ess compute.
# Needs torch (Debian python3-torch), installed by tools/setup.sh; without it the test reports itself skipped (exit 77).
set -euo pipefail
ESS=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! /usr/bin/python3 -c "import torch, h5py, numpy" 2>/dev/null; then
  echo "SKIP: python3-torch not installed (optional: apt-get install python3-torch)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$root/tools/python/test_dense_T.py" | tail -2
/usr/bin/python3 "$root/tools/python/example_export.py" -o "$tmp/ops.h5" --check | tail -1
"$ESS" compute "$tmp/ops.h5" -o "$tmp/r.h5" --quiet >/dev/null
/usr/bin/python3 "$root/tools/python/ess_reference.py" "$tmp/ops.h5" -o "$tmp/ref.h5"
/usr/bin/python3 "$root/tests/cli/compare_results.py" "$tmp/r.h5" "$tmp/ref.h5"
echo "python tools: ok"
