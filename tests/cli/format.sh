#!/usr/bin/env bash
# Every C++ file follows the committed .clang-format (tools/format.sh formats them).
set -uo pipefail
cd "$(dirname "$0")/../.."
if ! command -v clang-format >/dev/null; then
  echo "SKIP: clang-format is not installed (tools/setup.sh installs it)"
  exit 77
fi
bash tools/format.sh --check
