# Sourced by the CLI tests that compare with tokenizers.js (tools/node/encode.mjs), after they set
# root: sets nm (tools/node/node_modules), installing the npm packages with tools/setup_node.sh when
# they are missing. Without node or the packages the test skips (77), except under CI=true, where
# that is a failure.
nm="$root/tools/node/node_modules"
# shellcheck source=tests/cli/unavailable.bash
source "$root/tests/cli/unavailable.bash"
command -v node >/dev/null 2>&1 || unavailable "node is not installed" "run tools/setup_node.sh"
if [ ! -f "$nm/@huggingface/tokenizers/package.json" ]; then
  bash "$root/tools/setup_node.sh" >&2 || unavailable "the npm packages could not be installed" "run tools/setup_node.sh"
fi
