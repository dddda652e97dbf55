#!/usr/bin/env bash
# The chat NLA's third CPU phase: phase 2's recipe (both stages restart from the shipped NLA; chat rows keep the
# chat teacher) with the text rows' targets swapped for the shipped AV's AR-selected best of 4 samples, so text is
# pulled up, not toward the shipped AV's average sample (phase 2's text fell 0.089). docs/results/chat-nla.md.
# Resumable: each step is skipped when its output exists and the SFT stages resume from their checkpoints, so rerun
# it after any stop (`nice -n 19` it beside other work). Needs runs/chat/data{,2} (devscripts/chat_nla.sh's data
# steps, ~20 min).
#   nohup nice -n 19 bash devscripts/chat_phase3.sh > runs/chat/phase3.log 2>&1 &
# Phase 4 is the same data and AR with a third of the AV learning rate (phase 3's text fell further, 0.352):
#   AV_RUN=av_sft4 AV_LR=0.0001 PAIR=chat-bo4-lr1e-4 nohup nice -n 19 bash devscripts/chat_phase3.sh > runs/chat/phase4.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
S=nla_audit/data/nla/smollm2-135m-instruct
MIX=runs/chat/mix3
AV_RUN="${AV_RUN:-av_sft3}" PAIR="${PAIR:-chat-bo4-s400}"
export AV_LR="${AV_LR:-}"
NLA="${PWD}/.venv/bin/nla-audit"
export THREADS="${THREADS:-2}" OMP_NUM_THREADS="${THREADS:-2}" MKL_NUM_THREADS="${THREADS:-2}"
step() { echo "[$1] $(date -u +%H:%M)"; }
done_steps() { tail -n 1 "runs/chat/$1/metrics.jsonl" 2>/dev/null | python3 -c \
  "import json,sys; print(json.loads(sys.stdin.read() or '{\"step\": 0}')['step'])"; }

[ -f runs/chat/data2/av_sft.parquet ] || { echo "no runs/chat/data2: run devscripts/chat_nla.sh's data steps"; exit 2; }
[ -f $MIX/text_rows.parquet ] || { step text-rows; .venv/bin/python devscripts/chat_mix.py text-rows --mix $MIX; }
if [ ! -f $MIX/text_bo4.parquet ]; then
  step "best-of-4 text rows"
  "$NLA" train av-texts --av $S/av --data $MIX/text_rows.parquet --out $MIX/text_bo4.parquet \
    --set stage=av_sft best_of=4 ar=$S/ar max_rows=900 chunk_rows=64 batch_size=32 device=cpu
fi
if [ ! -f $MIX/av_sft.parquet ]; then
  step merge
  .venv/bin/python devscripts/chat_mix.py merge --mix $MIX --own text_bo4.parquet
  cp runs/chat/data2/ar_eval.parquet runs/chat/data2/ar_eval.parquet.nla_meta.yaml $MIX/
fi
# the stages one after the other on both threads (phase 2's steps: AR 100 × 16, AV 400 × 8; constant LR after warmup)
if [ "$(done_steps ar_sft3)" -lt 100 ]; then
  step "AR SFT"; ONLY=ar DATA=mix3 AR_RUN=ar_sft3 AR_STEPS=100 bash devscripts/chat_nla.sh
fi
if [ "$(done_steps "$AV_RUN")" -lt 400 ]; then
  step "AV SFT"; ONLY=av DATA=mix3 AV_RUN="$AV_RUN" AV_STEPS=400 bash devscripts/chat_nla.sh
fi
step score
.venv/bin/python benchmarks/fve_by_class.py --pair shipped $S/av $S/ar --pair "$PAIR" "runs/chat/$AV_RUN/av" \
  runs/chat/ar_sft3/ar --text-docs 40 --chat-docs 40 --positions 3 --task-items 12 --append
step done
