#!/usr/bin/env bash
# The llama2.c reader, converter and tokenizer behind the real checkpoints, offline: random llama2.c
# checkpoints converted to LlamaForCausalLM give the logits of a forward pass written in llama2.c's
# own conventions (adjacent-pair RoPE) through the reference's Hugging Face forward, and not without
# the q/k permutation; BPE merges, byte fallback and decoding on a hand-built vocabulary in both
# tokenizer schemas, and `ess tokenize` with the tokenizer.json the conversion writes for it;
# malformed files refused (tools/reference/test_llama2c.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if ! /usr/bin/python3 -c "import torch, h5py, numpy" 2>/dev/null; then
  echo "SKIP: python3-torch not installed"
  exit 77
fi
/usr/bin/python3 "$root/tools/reference/test_llama2c.py" "$1"
