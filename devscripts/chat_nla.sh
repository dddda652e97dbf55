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
AR_STEPS="${AR_STEPS:-3000}"
AV_STEPS="${AV_STEPS:-3000}"
mkdir -p "$RUN"

last_step() { tail -n 1 "$1/metrics.jsonl" 2>/dev/null | python3 -c "import json,sys; print(json.loads(sys.stdin.read() or '{\"step\": 0}')['step'])"; }
resume_flag() { [ -f "$1/checkpoint/state.pt" ] && echo --resume || true; }

if [ "${1:-}" = status ]; then
  for s in ar_sft av_sft; do echo "$s: step $(last_step "$RUN/$s")"; done
  exit 0
fi

[ -f "$RUN/data/base.parquet" ] || "$NLA" extract --corpus mix --max-length 512 --positions 16 --min-position 10 \
  --max-docs 940 --batch-size 8 --out "$RUN/data/base.parquet" --quiet
[ -f "$RUN/data/rl.parquet" ] || "$NLA" datagen --data "$RUN/data/base.parquet" --out-dir "$RUN/data" --pool-sft \
  --dtype float32

# one thread each when both stages run side by side; ONLY=av (or ar) trains one stage on THREADS threads
ONLY="${ONLY:-}"
export OMP_NUM_THREADS="${THREADS:-1}" MKL_NUM_THREADS="${THREADS:-1}"
[ "$ONLY" = av ] || "$NLA" train ar-sft --data "$RUN/data/ar_sft.parquet" --run-dir "$RUN/ar_sft" --quiet $(resume_flag "$RUN/ar_sft") \
  --set init_from="$SHIPPED/ar" steps="$AR_STEPS" batch_size=16 eval_data="$RUN/data/ar_eval.parquet" eval_rows=128 \
  save_every=50 eval_every=100 > "$RUN/ar_sft.log" 2>&1 &
[ "$ONLY" = ar ] || "$NLA" train av-sft --data "$RUN/data/av_sft.parquet" --run-dir "$RUN/av_sft" --quiet $(resume_flag "$RUN/av_sft") \
  --set init_from="$SHIPPED/av" steps="$AV_STEPS" batch_size=8 save_every=50 eval_every=100 > "$RUN/av_sft.log" 2>&1 &
wait
