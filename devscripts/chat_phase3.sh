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
source devscripts/chat_common.sh
MIX=runs/chat/mix3
AV_RUN="${AV_RUN:-av_sft3}" PAIR="${PAIR:-chat-bo4-s400}"

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
train_and_score mix3 ar_sft3 "$AV_RUN" "$PAIR"
