#!/usr/bin/env bash
# A real pretrained checkpoint (stories15M from llama2.c, fetched with npm and converted by
# tools/setup_real_checkpoints.sh; docs/real-checkpoints.md): the independent PyTorch reference
# reproduces its published greedy samples token for token (and a conversion without the RoPE q/k
# permutation does not), and `ess analyze`'s ESS of the real model equals the ESS of the
# reference's operators; the /model checker of tests/cli/real_checkpoint.sh is itself checked.
# Skipped (77) without torch, or when npm / the package cannot be had.
set -uo pipefail
source "$(dirname "$0")/real_checkpoint_setup.bash" "$1"
$PY "$root/tools/reference/check_real_checkpoint.py" reference "$spec" "$ckpt" --control || fail=1

# ESS of the real model: ess analyze against the reference's operators (tests/cli/compare_results.py rules).
$PY "$root/tools/reference/check_real_checkpoint.py" tokens "$spec" "$ckpt" bos -o "$tmp/bos.tokens" &&
  "$ESS" analyze "$ckpt" --tokens "$tmp/bos.tokens" -o "$tmp/ess.h5" --quiet >/dev/null &&
  $PY "$root/tools/reference/reference_forward.py" "$ckpt" --tokens "$tmp/bos.tokens" -o "$tmp/expected.h5" --check \
    >/dev/null 2>"$tmp/check.log" &&
  $PY "$root/tools/python/ess_reference.py" "$tmp/expected.h5" -o "$tmp/ref.h5" &&
  $PY "$root/tests/cli/compare_results.py" "$tmp/ess.h5" "$tmp/ref.h5" &&
  echo "ok: ess analyze's ESS of stories15M equals the reference's" || { cat "$tmp/check.log"; echo "FAIL: ESS of stories15M"; fail=1; }

# The checker that tests/cli/real_checkpoint.sh runs on ess's /model group: accepts the reference's
# own predictions in the documented layout, rejects one changed argmax.
chk=$root/tools/reference/check_real_checkpoint.py
$PY "$chk" fake-results "$spec" "$ckpt" dog -o "$tmp/good.h5" && $PY "$chk" ess "$spec" "$ckpt" dog "$tmp/good.h5" >/dev/null &&
  $PY "$chk" fake-results "$spec" "$ckpt" dog -o "$tmp/bad.h5" --corrupt 100 &&
  ! $PY "$chk" ess "$spec" "$ckpt" dog "$tmp/bad.h5" >/dev/null &&
  echo "ok: the /model checker accepts the reference's predictions and rejects a changed argmax" ||
  { echo "FAIL: /model checker self-test"; fail=1; }
exit $fail
