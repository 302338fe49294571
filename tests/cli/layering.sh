#!/usr/bin/env bash
# The layer rule (docs/architecture.md): core (libess/) ← operators/ ← models/ ← analysis/ ← tools/.
# A file may include headers of its own layer and of the layers below it, never above, and only by
# the root-relative name ("libess/x.h"), never by a relative path. Checked twice: by name here, and
# by the build (each target's include root sees only the layers it links), which this test also
# exercises with a deliberate upward include.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=$(dirname "$1")
declare -A allowed=(
  [libess]="libess"
  [operators]="libess operators"
  [models]="libess operators models"
  [analysis]="libess operators models analysis"
  [tools]="libess operators models analysis tools"
)

# check_tree ROOT: prints every include that breaks the rule; fails if there is one.
check_tree() {
  local root=$1 fail=0 layer file line text target top
  for layer in libess operators models analysis tools; do
    [ -d "$root/$layer" ] || continue
    while IFS= read -r -d '' file; do
      while IFS=: read -r line text; do
        # (bash's own regex, not a sed per line: the tree has thousands of includes)
        target=$text
        [[ $text =~ \#[[:space:]]*include[[:space:]]*\"([^\"]+)\" ]] && target=${BASH_REMATCH[1]}
        top=${target%%/*}
        if [[ "$target" != */* || "$target" == ../* || "$target" == ./* ]]; then
          echo "${file#$root/}:$line: include \"$target\" must name its layer (e.g. \"libess/x.h\")"
          fail=1
        elif [[ " ${allowed[$layer]} " != *" $top "* ]]; then
          echo "${file#$root/}:$line: $layer/ may not include \"$target\" ($top/ is a higher layer)"
          fail=1
        fi
      done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file")
    done < <(find "$root/$layer" \( -name '*.h' -o -name '*.cpp' \) -print0)
  done
  return $fail
}

status=0
if check_tree .; then
  echo "ok: every include points down"
else
  echo "FAIL: upward or relative includes (above)"
  status=1
fi

# The checker itself must catch an upward include: copy the tree, add one, expect a failure.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r libess operators models analysis "$tmp"/
echo '#include "models/model.h"' >>"$tmp/operators/dense.h"
if out=$(check_tree "$tmp") || [[ "$out" != *"operators/dense.h"*"models/model.h"* ]]; then
  echo "FAIL: an injected upward include (operators → models) was not reported"
  status=1
else
  echo "ok: an injected upward include is reported: $out"
fi

# The build enforces it too: with the include roots the operators target compiles with, a header
# of the models layer is not found.
if [ -d "$build/layers/libess" ] && [ -d "$build/layers/operators" ]; then
  mkdir -p "$tmp/probe"
  # (The same flags as the downward probe below, and the error must be that header not found: a
  # probe that failed for any other reason, e.g. without Eigen's path, would prove nothing.)
  printf '#include "models/model.h"\n' >"$tmp/probe/upward.cpp"
  if c++ -std=c++17 -fsyntax-only -I/usr/include/eigen3 -I"$build/layers/libess" -I"$build/layers/operators" \
       "$tmp/probe/upward.cpp" 2>"$tmp/probe/upward.err"; then
    echo "FAIL: the operators layer's include roots can see models/"
    status=1
  elif ! grep -q "models/model.h.*No such file" "$tmp/probe/upward.err"; then
    echo "FAIL: the upward probe failed for another reason than models/model.h not found:"
    cat "$tmp/probe/upward.err"
    status=1
  else
    echo "ok: the operators layer's include roots do not see models/"
  fi
  printf '#include "operators/dense.h"\n' >"$tmp/probe/downward.cpp"
  if c++ -std=c++17 -fsyntax-only -I/usr/include/eigen3 -I"$build/layers/libess" -I"$build/layers/operators" \
       "$tmp/probe/downward.cpp"; then
    echo "ok: the same roots do see libess/ and operators/"
  else
    echo "FAIL: the operators layer's include roots miss its own headers"
    status=1
  fi
else
  echo "FAIL: $build/layers not found (configure with CMake first)"
  status=1
fi
exit $status
