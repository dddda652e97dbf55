#!/usr/bin/env bash
# Carry the chat NLA rebuild (devscripts/chat_rebuild.sh) across sessions in git: this workplace lays each
# session's work tree anew and does not always keep its machine, so runs/ can vanish between sessions (session 26
# found none). `save` copies what the rebuild cannot cheaply redo into resume/chat/ (committed): both SFT stages'
# exports and run records and the benchmark caches, and with CKPT=1 the merged AV-SFT rows and the SFT checkpoints
# (weights, optimizer, RNG: an exact resume of a stage stopped halfway; ~60 MB each, so only when one is). `restore`
# copies back whatever runs/ lacks. resume/ exists only while such a run is in flight: phase 11's pair shipped in
# session 27 and its resume/ was removed (git history keeps it, at commit 2583827).
#   bash devscripts/chat_state.sh save      # at the end of a session, then commit resume/
#   bash devscripts/chat_state.sh restore   # at the start of the next, then rerun chat_rebuild.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KEEP=(chat/ar_sft5/ar chat/av_sft6/av cross_ar_cache fve_by_class_cache)
for r in ar_sft5 av_sft6; do KEEP+=("chat/$r/metrics.jsonl" "chat/$r/resolved_config.yaml" "chat/$r/run_id"); done
[ "${CKPT:-0}" = 1 ] && KEEP+=(chat/mix5/av_sft.parquet chat/mix5/av_sft.parquet.nla_meta.yaml chat/mix5/ar_sft.parquet
  chat/mix5/ar_sft.parquet.nla_meta.yaml chat/ar_sft5/checkpoint chat/av_sft6/checkpoint)
case "${1:-}" in
  save)
    for k in "${KEEP[@]}"; do
      [ -e "runs/$k" ] || continue
      mkdir -p "resume/$(dirname "$k")" && rm -rf "resume/$k.tmp" && cp -r "runs/$k" "resume/$k.tmp" \
        && rm -rf "resume/$k" && mv "resume/$k.tmp" "resume/$k" && echo "saved $k"
    done ;;
  restore)
    [ -e runs ] || { mkdir -p "${NLA_AUDIT_CACHE:-$HOME/.cache/nla_audit}/runs" && ln -s "${NLA_AUDIT_CACHE:-$HOME/.cache/nla_audit}/runs" runs; }
    for k in "${KEEP[@]}"; do
      [ -e "resume/$k" ] && [ ! -e "runs/$k" ] || continue
      mkdir -p "runs/$(dirname "$k")" && cp -r "resume/$k" "runs/$k" && echo "restored $k"
    done ;;
  *) echo "usage: bash devscripts/chat_state.sh {save|restore}" >&2; exit 2 ;;
esac
