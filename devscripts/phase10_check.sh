#!/usr/bin/env bash
# Phase 10's checkpoint check (docs/results/chat-nla.md): wait for the GRPO export of step STEP, copy it aside, and
# read it on the rl split + the tasks' train items against the shipped pair and phase 7's pair (appended to
# BENCHMARKS.md).   nohup bash devscripts/phase10_check.sh 50 > runs/chat/phase10_check50.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
STEP="$1" RUN="${RUN:-runs/chat/rl_cpu}" S=nla_audit/data/nla/smollm2-135m-instruct
DEST="$RUN-s$STEP"
step_of() { .venv/bin/python -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['training']['step'])" "$1" 2>/dev/null || echo 0; }
until [ -d "$DEST" ]; do
  if [ "$(step_of "$RUN/av/nla_meta.yaml")" = "$STEP" ] && [ "$(step_of "$RUN/ar/nla_meta.yaml")" = "$STEP" ]; then
    rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp" && cp -r "$RUN/av" "$RUN/ar" "$DEST.tmp/"
    [ "$(step_of "$DEST.tmp/av/nla_meta.yaml")" = "$STEP" ] && [ "$(step_of "$DEST.tmp/ar/nla_meta.yaml")" = "$STEP" ] \
      && mv "$DEST.tmp" "$DEST"
  fi
  sleep 15
done
echo "[copied step $STEP] $(date -u +%H:%M)"
OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 .venv/bin/python devscripts/cross_ar.py --split rl --task-items 12 --task-split train \
  --av shipped "$S/av" --av p6 runs/chat/av_sft6/av --av "g$STEP" "$DEST/av" \
  --ar shipped "$S/ar" --ar a0.5 runs/chat/ar_wise/a0.5 --ar "g$STEP" "$DEST/ar" --append
echo "[done] $(date -u +%H:%M)"
