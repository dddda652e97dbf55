# Sourced by devscripts/chat_phase{3,5}.sh (from the repository root): the shipped NLA, the CLI, the thread count,
# and the steps every CPU phase of the chat NLA shares (docs/results/chat-nla.md).
S=nla_audit/data/nla/smollm2-135m-instruct
NLA="${PWD}/.venv/bin/nla-audit"
export THREADS="${THREADS:-2}" OMP_NUM_THREADS="${THREADS:-2}" MKL_NUM_THREADS="${THREADS:-2}"
export AV_LR="${AV_LR:-}"   # empty: the av-sft default (3e-4); chat_nla.sh passes it on
step() { echo "[$1] $(date -u +%H:%M)"; }
done_steps() { tail -n 1 "runs/chat/$1/metrics.jsonl" 2>/dev/null | python3 -c \
  "import json,sys; print(json.loads(sys.stdin.read() or '{\"step\": 0}')['step'])"; }

# train_and_score DATA AR_RUN AV_RUN PAIR: both stages continued from the shipped NLA one after the other on all
# threads (AR 100 × 16, AV 400 × 8, constant LR after warmup; each resumes from its checkpoint), then the by-class
# table against the shipped NLA, appended to BENCHMARKS.md.
train_and_score() {
  local data="$1" ar_run="$2" av_run="$3" pair="$4"
  if [ "$(done_steps "$ar_run")" -lt 100 ]; then
    step "AR SFT"; ONLY=ar DATA="$data" AR_RUN="$ar_run" AR_STEPS=100 bash devscripts/chat_nla.sh
  fi
  if [ "$(done_steps "$av_run")" -lt 400 ]; then
    step "AV SFT"; ONLY=av DATA="$data" AV_RUN="$av_run" AV_STEPS=400 bash devscripts/chat_nla.sh
  fi
  step score
  .venv/bin/python benchmarks/fve_by_class.py --pair shipped "$S/av" "$S/ar" --pair "$pair" "runs/chat/$av_run/av" \
    "runs/chat/$ar_run/ar" --text-docs 40 --chat-docs 40 --positions 3 --task-items 12 --append
  step done
}

# phase5_data: phase 5's data steps into $MIX (content rows, the shipped AV's samples there, the merge with phase 3's
# best-of-4 text rows); each skipped when its output exists. Used by chat_phase5.sh and chat_rebuild.sh.
phase5_data() {
[ -f $MIX/content_rows.parquet ] || { step content-rows; .venv/bin/python devscripts/chat_mix.py content-rows --mix $MIX; }
if [ ! -f $MIX/content_ar.parquet ]; then
  step "content samples"
  "$NLA" train av-texts --av $S/av --data $MIX/content_rows.parquet --out $MIX/content_ar.parquet \
    --set max_rows=900 chunk_rows=64 batch_size=32 device=cpu
fi
if [ ! -f $MIX/av_sft.parquet ]; then
  step merge
  .venv/bin/python devscripts/chat_mix.py merge --mix $MIX --own ../mix3/text_bo4.parquet --content content_ar.parquet
  cp runs/chat/data2/ar_eval.parquet runs/chat/data2/ar_eval.parquet.nla_meta.yaml $MIX/
fi
}
