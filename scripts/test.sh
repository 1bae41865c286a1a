#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine as root: installs, where missing, the sandbox's
# Debian packages and those the tests need (scripts/sandbox.sh install --all: login shells, Podman,
# Slurm, Chromium...; `scripts/sandbox.sh uninstall` deletes what the sandbox made); builds the
# package's wheel from a clean copy of this checkout and installs it (not --editable: the suite tests
# what users get); runs ruff, pycodestyle's blank-line rules, mypy over the package, and pytest with
# the checkout off sys.path. The end-to-end tests start the sandbox (scripts/sandbox.sh) themselves
# and stop it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/sandbox.sh install --all
wheel=$(scripts/build_wheel.sh)
python3 -m pip uninstall --quiet --yes pystributed 2>/dev/null || true
python3 -m pip install --quiet "${wheel}[test]"
python3 -m ruff check .
# E30x (blank lines, as pycodestyle counts them) are preview rules in ruff: a method indented into the
# function above it, after its return, passes ruff's defaults and fails these.
python3 -m ruff check --preview --select E301,E302,E303,E304,E305,E306 pystributed tests scripts benchmarks
python3 -m mypy pystributed
# PYTHONSAFEPATH: no `python -m` here or in the tests' subprocesses puts the current folder (this
# checkout) first on sys.path, so `import pystributed` finds the installed wheel (tests/conftest.py
# checks, and prints where it is).
PYTHONSAFEPATH=1 python3 -m pytest -v tests "$@"
