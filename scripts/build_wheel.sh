#!/usr/bin/env bash
# Build the package's wheel from a clean copy of this checkout and print its path. Used by
# scripts/test.sh and scripts/demo.sh, which install it as a user would.
#
# What is copied: every file git tracks (as the work tree has it, edits included), plus the files
# under pystributed/ that git does not track yet and does not ignore. The first is what a fresh clone
# builds; the second is what the package needs while a developer works: a new module written but not
# yet `git add`ed still goes in, so the installed wheel imports it as the checkout does. Nothing else
# untracked is ever copied: the folders a user keeps beside the package (a .venv, a notebook's
# results/, a data folder) are not the package's, and copying them broke the build (a venv's lib64
# is a symlink to a folder).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
src=$out/src
mkdir -p "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    {
        git ls-files -z --cached
        git ls-files -z --others --exclude-standard -- pystributed
    } | while IFS= read -r -d '' path; do
        # Plain files only: a tracked file deleted here is left out, and a folder (or a link to one) is
        # never copied whole.
        if [ -f "$path" ] && [ ! -d "$path" ]; then cp --parents -- "$path" "$src/"; fi
    done
else  # an extracted zip (no git to ask): what the build reads, never the folders beside it
    cp -r setup.py MANIFEST.in README.md config.py.example pystributed "$src/"
    find "$src/pystributed" -name __pycache__ -prune -exec rm -rf {} +
fi
python3 -m pip wheel --quiet --no-deps --wheel-dir "$out/dist" "$src" >&2
ls "$out"/dist/pystributed-*.whl
