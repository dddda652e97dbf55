#!/usr/bin/env bash
# The chat NLA run on the CPU: the shipped (fortunes-only) NLA continued on the chat + text mix.
# Resumable: every stage is skipped when done and resumed from its last checkpoint otherwise, so rerun it after
# any stop. `bash devscripts/chat_nla.sh status` prints where each stage is.
#   data:  extract (mix: ShareGPT + fortunes half and half by tokens, chats cut to 512 tokens at a turn boundary,
#          16 positions a document, a quarter of a chat's at template tokens) → datagen (offline teacher, pooled SFT)
#   train: AR SFT and AV SFT side by side (one thread each), both continued from the shipped NLA
# The same recipe as one sequential command: nla-audit train pipeline --set corpus=mix init_from=default ...
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${NLA_CHAT_RUN:-runs/chat}"
NLA="${PWD}/.venv/bin/nla-audit"
SHIPPED=nla_audit/data/nla/smollm2-135m-instruct
# Phase 1 (this script's defaults) continued the shipped NLA on the teacher's mix data; its text fve_nrm fell
# (teacher text undid GRPO) and its teacher text held raw <|im_end|> tokens. Phase 2, from the shipped NLA again:
#   nla-audit datagen --data runs/chat/data/base.parquet --out-dir runs/chat/data2 --pool-sft --dtype float32
#   python devscripts/chat_mix.py text-rows
#   nla-audit train av-texts --av nla_audit/data/nla/smollm2-135m-instruct/av --data runs/chat/mix/text_rows.parquet \
#     --out runs/chat/mix/text_ar.parquet --set max_rows=900 chunk_rows=128 batch_size=32 device=cpu
#   python devscripts/chat_mix.py merge && cp runs/chat/data2/ar_eval.parquet* runs/chat/mix/
#   DATA=mix AR_RUN=ar_sft2 AV_RUN=av_sft2 AR_STEPS=150 bash devscripts/chat_nla.sh
DATA="${DATA:-data}"
AR_RUN="${AR_RUN:-ar_sft}"
AV_RUN="${AV_RUN:-av_sft}"
AR_INIT="${AR_INIT:-$SHIPPED/ar}"
AV_INIT="${AV_INIT:-$SHIPPED/av}"
AR_STEPS="${AR_STEPS:-3000}"
AV_STEPS="${AV_STEPS:-3000}"
AV_LR="${AV_LR:-}"   # empty: the av-sft default (3e-4)
mkdir -p "$RUN"

last_step() { tail -n 1 "$1/metrics.jsonl" 2>/dev/null | python3 -c "import json,sys; print(json.loads(sys.stdin.read() or '{\"step\": 0}')['step'])"; }
resume_flag() { [ -f "$1/checkpoint/state.pt" ] && echo --resume || true; }

if [ "${1:-}" = status ]; then
  for s in "$AR_RUN" "$AV_RUN"; do echo "$s: step $(last_step "$RUN/$s")"; done
  exit 0
fi

if [ ! -f "$RUN/$DATA/av_sft.parquet" ]; then  # a restored state (chat_state.sh) may hold $DATA without data/
  [ -f "$RUN/data/base.parquet" ] || "$NLA" extract --corpus mix --max-length 512 --positions 16 --min-position 10 \
    --max-docs 940 --batch-size 8 --out "$RUN/data/base.parquet" --quiet
  "$NLA" datagen --data "$RUN/data/base.parquet" --out-dir "$RUN/$DATA" --pool-sft --dtype float32
fi

# one thread each when both stages run side by side; ONLY=av (or ar) trains one stage on THREADS threads
ONLY="${ONLY:-}"
export OMP_NUM_THREADS="${THREADS:-1}" MKL_NUM_THREADS="${THREADS:-1}"
[ "$ONLY" = av ] || "$NLA" train ar-sft --data "$RUN/$DATA/ar_sft.parquet" --run-dir "$RUN/$AR_RUN" --quiet \
  $(resume_flag "$RUN/$AR_RUN") --set init_from="$AR_INIT" steps="$AR_STEPS" batch_size=16 \
  eval_data="$RUN/$DATA/ar_eval.parquet" eval_rows=128 save_every=50 eval_every=100 > "$RUN/$AR_RUN.log" 2>&1 &
[ "$ONLY" = ar ] || "$NLA" train av-sft --data "$RUN/$DATA/av_sft.parquet" --run-dir "$RUN/$AV_RUN" --quiet \
  $(resume_flag "$RUN/$AV_RUN") --set init_from="$AV_INIT" steps="$AV_STEPS" batch_size=8 save_every=50 ${AV_LR:+lr=$AV_LR} \
  eval_every=100 > "$RUN/$AV_RUN.log" 2>&1 &
wait
