#!/usr/bin/env bash
# Phase 11's choice check (docs/results/chat-nla.md): the rebuilt phase 7 pair (devscripts/chat_rebuild.sh) read
# on the rl split + the tasks' train items against the shipped pair, with --retries 2 (the reading that decides)
# and without (beside it: the rebuild's drift apart from the rule's effect). Both tables go to BENCHMARKS.md. The
# plain greedy pass is cached and the retried reading resamples from it, so the second run costs only the AR.
#   nohup bash devscripts/phase11_check.sh > runs/chat/phase11_check.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
S=nla_audit/data/nla/smollm2-135m-instruct
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2  # the thread count the caches were filled with (activations differ)
for r in 2 0; do
  .venv/bin/python devscripts/cross_ar.py --split rl --task-items 12 --task-split train --retries "$r" \
    --av shipped "$S/av" --av p11 runs/chat/av_sft6/av --ar shipped "$S/ar" --ar p11 runs/chat/ar_wise/a0.5 --append
done
echo "[done] $(date -u +%H:%M)"
