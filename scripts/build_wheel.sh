#!/usr/bin/env bash
# Build the package's wheel from a clean copy of this checkout (the files git tracks, or that it
# would add: nothing ignored, no build leftovers) and print its path. Used by scripts/test.sh and
# scripts/demo.sh, which install it as a user would.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
src=$out/src
mkdir -p "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' path; do
        if [ -e "$path" ]; then cp --parents -- "$path" "$src/"; fi  # a tracked file deleted here is left out
    done
else  # an extracted zip: all of it
    cp -r . "$src/"
fi
python3 -m pip wheel --quiet --no-deps --wheel-dir "$out/dist" "$src" >&2
ls "$out"/dist/pystributed-*.whl
