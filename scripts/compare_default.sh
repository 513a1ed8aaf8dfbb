#!/usr/bin/env bash
# The default SLM-vs-LLM comparison, offline: zero-shot, 4-shot and LoRA of SmolLM2-135M on the built-in
# tickets, then the report (<run dir>/report/report.html). Add an API model when you have an endpoint:
#   bash scripts/compare_default.sh +baseline@api_baselines.gpt4o_mini=api api_baselines.gpt4o_mini.model=gpt-4o-mini
set -euo pipefail
slmforge-compare "$@"
