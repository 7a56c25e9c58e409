#!/usr/bin/env bash
# The README's test command: set up .venv, then run the default test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -m paper`).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
"$VENV_PYTHON" -m pytest "$@"
