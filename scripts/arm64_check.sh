#!/usr/bin/env bash
# aarch64 check under qemu-user emulation (issue 15): see scripts/arm64_check.py for what it checks.
# Runs with the project venv's python (make install / make test create it); needs root.
#   scripts/arm64_check.sh [--self-test-wrong] [--cpus cortex-a76,cortex-a72]
# Exit 0: passed; 1: aarch64 disagrees with x86-64; 2: the check could not run (never a silent skip).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${EDGEMODE_CACHE:-$HOME/.cache/edgemode}"
PY="${EDGEMODE_VENV:-$CACHE/venv}/bin/python"
if [ ! -x "$PY" ]; then
    echo "arm64 check: CANNOT RUN: no project venv python at $PY (run 'make install' first)" >&2
    exit 2
fi
exec "$PY" scripts/arm64_check.py "$@"
