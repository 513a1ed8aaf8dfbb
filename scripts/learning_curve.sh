#!/usr/bin/env bash
# Learning curve: fine-tune each model size on a growing number of training examples per label, then one
# report over the sweep (quality vs training examples per model, and, when an API baseline is included, the
# monthly volume above which fine-tuning is cheaper than the API: the break-even).
#
#   scripts/learning_curve.sh                                   # defaults below, offline tickets data
#   MODELS=smollm2-135m,qwen2.5-0.5b SIZES=10,20,50,null SEEDS=0,1,2 scripts/learning_curve.sh hardware=gpu
#   BASELINES=outputs/compare/<run> scripts/learning_curve.sh  # add API records for the break-even
#
# Environment (all optional):
#   MODELS     conf/model choices, comma-separated (default smollm2-135m,gemma3-270m: both offline; a size
#              this machine cannot load is skipped, see scripts/sweep_model_sizes.sh)
#   SIZES      data.per_label_train values: at most N training rows per label, seeded; `null` = all rows
#              (default 5,10,20,null; the tickets data has 32 rows per label, so sizes above that equal null)
#   SEEDS      seeds per point; several seeds give the curve 95% whiskers across seeds (default 0).
#              Jobs = models x sizes x seeds, each a full training run plus a zero-shot baseline row.
#   SWEEP_DIR  where the runs go (default outputs/learning_curve/<date-time>); the report is SWEEP_DIR/report
#   BASELINES  comma-separated run folders with API records (slmforge-compare / slmforge-evaluate) to
#              compare against; without them the report has the curve but no break-even
# Extra arguments go to slmforge-train (e.g. data=banking77, hardware=gpu, eval.zero_shot=false).
set -euo pipefail
MODELS="${MODELS:-smollm2-135m,gemma3-270m}"
SIZES="${SIZES:-5,10,20,null}"
SEEDS="${SEEDS:-0}"
SWEEP_DIR="${SWEEP_DIR:-outputs/learning_curve/$(date +%Y%m%d-%H%M%S)}"
RUNS="${SWEEP_DIR}${BASELINES:+,${BASELINES}}"

slmforge-train -m \
  model="${MODELS}" \
  data.per_label_train="${SIZES}" \
  seed="${SEEDS}" \
  hydra.sweep.dir="${SWEEP_DIR}" \
  "$@"
slmforge-report "runs=[${RUNS}]" "output_dir=${SWEEP_DIR}/report"
echo "learning-curve report: ${SWEEP_DIR}/report/report.md"
