#!/usr/bin/env bash
# Build every model organism into runs/organisms/NAME (resumable: a built organism is skipped), then copy the
# valid ones into the package (nla_audit/data/organisms/NAME) with SHIP=1. On a 2-core CPU: ~15-25 min each.
#   nohup bash devscripts/organisms.sh > runs/organisms.log 2>&1 &
#   NAMES="lumen french" SET="sft_steps=150" bash devscripts/organisms.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NAMES=${NAMES:-"lumen lumen-decoy northwind french sandbagging"}
export OMP_NUM_THREADS=${THREADS:-2}
mkdir -p runs/organisms
for name in $NAMES; do
  if [ -f "runs/organisms/$name/organism.json" ]; then echo "[$name] built already"; continue; fi
  echo "[$name] building ($(date -u +%H:%M))"
  # shellcheck disable=SC2086
  .venv/bin/nla-audit organism build "$name" --out "runs/organisms/$name" ${SET:+--set $SET}
done
if [ "${SHIP:-0}" = 1 ]; then
  for name in $NAMES; do
    mkdir -p nla_audit/data/organisms && rm -rf "nla_audit/data/organisms/$name"
    cp -r "runs/organisms/$name" "nla_audit/data/organisms/$name" && chmod 644 "nla_audit/data/organisms/$name"/*
    echo "[$name] shipped"
  done
fi
