#!/usr/bin/env bash
# Model sizes x adapters: one run dir and one W&B run per job, grouped as sweep-sizes-<date>, tagged by
# model size. Hub sizes need internet (or local copies via model.pretrained=...). Then the report:
#   slmforge-report runs=[outputs/train/multiruns/<this sweep>]
# Extra arguments are passed on (e.g. hardware=gpu, hydra/launcher=joblib hydra.launcher.n_jobs=2).
set -euo pipefail
slmforge-train -m \
  model=smollm2-135m,smollm2-360m,qwen2.5-0.5b \
  adapter=lora,dora \
  logger.wandb.group="sweep-sizes-$(date +%Y%m%d-%H%M)" \
  "$@"
