#!/usr/bin/env bash
# LoRA rank/alpha/learning-rate grid on the default model, 2 jobs at a time with the joblib launcher.
# 12 jobs; each is a full slmforge-train run (zero-shot baseline off: it does not change across the grid).
set -euo pipefail
slmforge-train -m \
  adapter.r=8,16,32 \
  adapter.alpha=16,32 \
  train.lr=1e-3,2e-3 \
  eval.zero_shot=false \
  hydra/launcher=joblib hydra.launcher.n_jobs=2 \
  logger.wandb.group="sweep-lora-$(date +%Y%m%d-%H%M)" \
  "$@"
