#!/usr/bin/env bash
# Creates (or reuses) the project's virtual environment in .venv and installs
# requirements.txt into it. Sourced by scripts/test.sh and scripts/quickstart.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  "$PYTHON" -m venv "$ROOT/.venv"
fi
"$ROOT/.venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -r "$ROOT/requirements.txt"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
VENV_PYTHON="$ROOT/.venv/bin/python"
