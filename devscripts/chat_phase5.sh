#!/usr/bin/env bash
# The chat NLA's fifth CPU phase: the chat teacher only at template tokens. Phase 3's AV wrote the teacher's chat
# form on 59% of held-out *text* positions and read chat content worse in that form than the shipped AV does in its
# own, so a chat content row's target is the teacher's first line (where in the conversation, whose turn) followed
# by the shipped AV's own sample there; control rows keep the teacher, text rows phase 3's best-of-4 samples.
# Phase 3's steps otherwise (AR 100 × 16, AV 400 × 8, lr 3e-4), so phase 5 − phase 3 isolates the content rows.
# docs/results/chat-nla.md. Resumable like chat_phase3.sh; needs runs/chat/data2 and runs/chat/mix3/text_bo4.parquet.
#   nohup nice -n 19 bash devscripts/chat_phase5.sh > runs/chat/phase5.log 2>&1 &
# Phase 6 is phase 5's data and AR with a third of the AV learning rate (phase 5's text fell 0.037 paired):
#   AV_RUN=av_sft6 AV_LR=0.0001 PAIR=chat-hybrid-lr1e-4 nohup nice -n 19 bash devscripts/chat_phase5.sh > runs/chat/phase6.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
source devscripts/chat_common.sh
MIX=runs/chat/mix5
AV_RUN="${AV_RUN:-av_sft5}" PAIR="${PAIR:-chat-hybrid-s400}"

[ -f runs/chat/mix3/text_bo4.parquet ] || { echo "no runs/chat/mix3/text_bo4.parquet: run devscripts/chat_phase3.sh first"; exit 2; }
phase5_data
train_and_score mix5 ar_sft5 "$AV_RUN" "$PAIR"
