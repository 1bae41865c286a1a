#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine as root: installs Docker, the registry, sshd and
# debootstrap if missing, the package with its test extras, then runs ruff and pytest. The
# end-to-end tests start the sandbox (scripts/sandbox.sh) themselves and stop it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/sandbox.sh install
python3 -m pip install --quiet --editable '.[test]'
python3 -m ruff check .
python3 -m pytest -v tests "$@"
