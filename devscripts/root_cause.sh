#!/usr/bin/env bash
# The root-cause benchmark, one organism at a time (resumable: an organism with a finished log is skipped), so a
# 2-core CPU can spread its ~30 min per organism (3 seeds × 8 conditions) over sessions. Then one entry from all:
#   nohup bash devscripts/root_cause.sh > runs/root_cause.log 2>&1 &
#   python benchmarks/root_cause.py --logs runs/root_cause3/*/*.eval --append
#   NAMES="lumen base" SEEDS=1 bash devscripts/root_cause.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${ROOT_CAUSE_RUN:-runs/root_cause3}
SEEDS=${SEEDS:-3}
NAMES=${NAMES:-$(.venv/bin/nla-audit organism list --json | .venv/bin/python -c \
  "import json,sys; print(' '.join([o['name'] for o in json.load(sys.stdin) if o['valid']] + ['base']))")}
export OMP_NUM_THREADS=${THREADS:-2}
finished() {  # a log of this organism with status success
  .venv/bin/python - "$1" <<'PY'
import glob, sys
from inspect_ai.log import read_eval_log
ok = any(read_eval_log(p, header_only=True).status == "success" for p in glob.glob(f"{sys.argv[1]}/*.eval"))
sys.exit(0 if ok else 1)
PY
}
for name in $NAMES; do
  if finished "$OUT/$name"; then echo "[$name] done already"; continue; fi
  echo "[$name] auditing, $SEEDS seeds ($(date -u +%H:%M))"
  rm -rf "$OUT/$name.tmp" && mkdir -p "$OUT"
  .venv/bin/nla-audit eval root_cause -T organisms="$name" -T seeds="$SEEDS" --log-dir "$OUT/$name.tmp"
  rm -rf "$OUT/$name" && mv "$OUT/$name.tmp" "$OUT/$name"
done
echo "all done ($(date -u +%H:%M)): python benchmarks/root_cause.py --logs $OUT/*/*.eval --append"
