#!/usr/bin/env bash
# Phase 7's chat NLA pair (docs/results/chat-nla.md), rebuilt end to end on the 2-core CPU from the shipped NLA:
#   extract (mix, 940 docs) → datagen (offline teacher, pooled SFT) → phase 3's best-of-4 text rows → phase 5's
#   content rows + samples → merge → AR SFT (100 × 16) → AV SFT (400 × 8, lr 1e-4) → WiSE AR at α 0.5.
# Why a script of its own: a session's work tree is laid anew and its machine is not always kept, so runs/ from
# earlier sessions can be gone (session 26 found none). Every step is skipped when its output exists and the SFT
# stages resume from their checkpoints; `runs` is made a link into the cache folder (outside the work tree), so
# a kept machine resumes where the last session stopped; on a new machine, `bash devscripts/chat_state.sh restore`
# first brings back what an earlier session saved into resume/ (committed), and the data steps are then skipped.
# About 3 h of the 2-core CPU in all.
#   nohup nice -n 19 bash devscripts/chat_rebuild.sh > runs/chat/rebuild.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -e runs ]; then
  store="${NLA_AUDIT_CACHE:-$HOME/.cache/nla_audit}/runs"
  mkdir -p "$store" && ln -s "$store" runs
fi
mkdir -p runs/chat
source devscripts/chat_common.sh

# the data steps, skipped when a saved state (chat_state.sh) holds what is left to train: both SFT stages done, or
# the AR done and the AV-SFT rows there
if [ "$(done_steps ar_sft5)" -lt 100 ] || { [ "$(done_steps av_sft6)" -lt 400 ] && [ ! -f runs/chat/mix5/av_sft.parquet ]; }; then
  if [ ! -f runs/chat/data/base.parquet ]; then
    step extract
    "$NLA" extract --corpus mix --max-length 512 --positions 16 --min-position 10 --max-docs 940 --batch-size 8 \
      --out runs/chat/data/base.parquet --quiet
  fi
  if [ ! -f runs/chat/data2/av_sft.parquet ]; then
    step datagen
    "$NLA" datagen --data runs/chat/data/base.parquet --out-dir runs/chat/data2 --pool-sft --dtype float32
  fi
  [ -f runs/chat/mix3/text_rows.parquet ] || { step text-rows; .venv/bin/python devscripts/chat_mix.py text-rows --mix runs/chat/mix3; }
  if [ ! -f runs/chat/mix3/text_bo4.parquet ]; then
    step "best-of-4 text rows"
    "$NLA" train av-texts --av $S/av --data runs/chat/mix3/text_rows.parquet --out runs/chat/mix3/text_bo4.parquet \
      --set stage=av_sft best_of=4 ar=$S/ar max_rows=900 chunk_rows=64 batch_size=32 device=cpu
  fi
  # phase 5's data steps, then its AR and phase 6's AV (the lr 1e-4 run), without the test-split scoring
  MIX=runs/chat/mix5
  phase5_data
fi
if [ "$(done_steps ar_sft5)" -lt 100 ]; then
  step "AR SFT"; ONLY=ar DATA=mix5 AR_RUN=ar_sft5 AR_STEPS=100 bash devscripts/chat_nla.sh
fi
if [ "$(done_steps av_sft6)" -lt 400 ]; then
  step "AV SFT"; ONLY=av DATA=mix5 AV_RUN=av_sft6 AV_STEPS=400 AV_LR=0.0001 bash devscripts/chat_nla.sh
fi
[ -d runs/chat/ar_wise/a0.5 ] || "$NLA" train interpolate --from $S/ar --to runs/chat/ar_sft5/ar --alpha 0.5 \
  --out runs/chat/ar_wise/a0.5
step done
