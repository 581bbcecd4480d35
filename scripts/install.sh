#!/usr/bin/env bash
# Create .venv (if needed) and install SIKD Studio with its service and test extras.
# torch is pinned to 2.13.0: on a CPU machine pip takes the local CPU build when one is offered
# (PIP_FIND_LINKS), elsewhere PyPI's build for the platform.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.sikd-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip setuptools wheel
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[service,test]"
  touch "$stamp"
fi
