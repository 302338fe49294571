# Sourced by CLI tests that compare peak memory: `peak_rss ESS CHECKPOINT TOKENS OUT BLOCKS` runs
# `ess analyze` (one thread, --blocks BLOCKS, output OUT) and prints the child's peak RSS
# (getrusage) in KiB; non-zero exit when analyze fails. Also sets PY, root and tmp (removed on
# exit), and exits 77 (skipped) without numpy.
PY=/usr/bin/python3
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
$PY -c "import numpy" 2>/dev/null || { echo "no numpy: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

peak_rss() {
  /usr/bin/python3 - "$@" <<'PYEOF'
import resource, subprocess, sys
ess, ck, tok, out, blocks = sys.argv[1:6]
subprocess.run([ess, "analyze", ck, "--tokens", tok, "-o", out, "--quiet", "--threads", "1", "--blocks", blocks],
               check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PYEOF
}
