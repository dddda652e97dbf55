#!/usr/bin/env bash
# Chat NLA phase 10 on the CPU: GRPO on the chat + text mix (rl split) from phase 7's pair (phase 6's AV + the
# WiSE-FT AR at α 0.5), the AR co-trained. Why: phase 7 fails the shipping rule only on the cot_hints position,
# where the AV loops on digit runs without closing its tag; SFT rows at byte-fragment tokens (phase 9) did not stop
# it, and GRPO scores an unclosed explanation as an orthogonal guess wherever it happens. 16 rollouts a step
# (~30 s on 2 cores); exports every 5 steps; resumable: rerun after any stop, it continues to STEPS in all.
#   nohup nice -n 19 bash devscripts/chat_phase10.sh > runs/chat/phase10.log 2>&1 &
# Choosing a step: devscripts/cross_ar.py --split rl --task-items 12 --task-split train on runs/chat/rl_cpu/{av,ar}
# copies (the rule in docs/results/chat-nla.md, phase 10); the test split once, for the chosen step.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${THREADS:-2}" MKL_NUM_THREADS="${THREADS:-2}"
RUN="${RUN:-runs/chat/rl_cpu}" STEPS="${STEPS:-400}"
resume=(); [ -f "$RUN/checkpoint/state.pt" ] && resume=(--resume)
.venv/bin/nla-audit train rl --data runs/chat/data/base.rl.parquet --run-dir "$RUN" \
  --av runs/chat/av_sft6/av --ar runs/chat/ar_wise/a0.5 --steps "$STEPS" ${resume[@]+"${resume[@]}"} --quiet \
  --set save_every=5 device=cpu seed=1
