#!/usr/bin/env bash
# The example notebook, end to end: save a cell, build, push, run on the server, results back.
# With no server configured (no examples/demo/config.py, no PYSTRIBUTED_REMOTE_SERVER) it runs
# against the local sandbox, which it installs and starts (Debian, as root): Docker, the registry, sshd
# and debootstrap alone (scripts/sandbox.sh install; `scripts/sandbox.sh uninstall` deletes what the
# sandbox made and lists those packages).
set -euo pipefail
cd "$(dirname "$0")/.."
# As a user installs it (a wheel of this checkout, not --editable), with the demo's extras.
wheel=$(scripts/build_wheel.sh)
python3 -m pip uninstall --quiet --yes pystributed 2>/dev/null || true
python3 -m pip install --quiet "${wheel}[demo]"
if [ ! -f examples/demo/config.py ] && [ -z "${PYSTRIBUTED_REMOTE_SERVER:-}" ]; then
    scripts/sandbox.sh install
    scripts/sandbox.sh start
    eval "$(scripts/sandbox.sh env)"
fi
python3 scripts/run_notebook.py examples/demo/demo.ipynb
