#!/usr/bin/env bash
# Formats every C++ file with the committed .clang-format; `--check` only reports (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
# (git's status is lost in the process substitution: an empty list — no .git, or git refusing the
# tree — would make clang-format read stdin and pass, so it is an error.)
mapfile -t files < <(git ls-files '*.cpp' '*.h')
if [ ${#files[@]} -eq 0 ]; then
  echo "format: git ls-files found no C++ files (not a git checkout?)" >&2
  exit 1
fi
if [ "${1:-}" = "--check" ]; then
  clang-format --dry-run --Werror "${files[@]}"
  echo "format: ${#files[@]} files follow .clang-format"
else
  clang-format -i "${files[@]}"
fi
