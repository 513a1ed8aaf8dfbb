#!/usr/bin/env bash
# Optuna search (conf/hparams_search/lora_optuna.yaml) maximising validation accuracy. Results:
# <sweep dir>/optimization_results.yaml holds the best parameters; every trial is a W&B run.
set -euo pipefail
slmforge-train -m hparams_search=lora_optuna eval.zero_shot=false "$@"
