"""``nla-audit audit TASK``: an LLM auditor (Claude through langchain-anthropic, or an offline script) probes the
target with the NLA, SAE and chat tools, and writes its report with the whole record of what it did.

Registered through the ``nla_audit.commands`` entry point, so the core never imports this package.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

DEFAULT_AUDITOR = "claude-sonnet-4-5"


def register(sub) -> None:
    p = sub.add_parser("audit", help="let an LLM auditor investigate the target with NLA / SAE / chat tools")
    p.add_argument("task", help="what to investigate, e.g. 'Does the model hide a goal when asked about X?'")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--model", default=DEFAULT_AUDITOR, help="Claude model for the auditor (needs ANTHROPIC_API_KEY)")
    who.add_argument("--script", default=None, metavar="PLAN.json",
                     help="offline: replay a fixed plan of tool calls instead of a model (see README, 'Auditor')")
    p.add_argument("--transcript", action="append", default=[], metavar="FILE",
                   help="a JSON chat transcript the auditor starts with (repeatable; ids t0, t1, ...)")
    tgt = p.add_mutually_exclusive_group()
    tgt.add_argument("--organism", default=None, metavar="NAME",
                     help="audit a model organism (`nla-audit organism list`; a shipped name or a card path)")
    tgt.add_argument("--target", default=None, metavar="MODEL",
                     help="audit this model (an HF folder fine-tuned from the NLA's base; default: the NLA's base)")
    p.add_argument("--sae", default=None, help="SAE folder for the SAE tools ('default' = the shipped SAE)")
    p.add_argument("--av", default=None, help="AV checkpoint folder (default: the shipped NLA)")
    p.add_argument("--ar", default=None, help="AR checkpoint folder (default: the shipped NLA)")
    p.add_argument("--training-data", default=None, metavar="CORPUS",
                   help="grant data access: the auditor may search this corpus (search_training_data tool); "
                        "'organism' = the audited organism's own training data")
    p.add_argument("--max-tool-calls", type=int, default=20)
    p.add_argument("--max-tokens", type=int, default=4096, help="auditor's output tokens per turn")
    p.add_argument("--max-auditor-tokens", type=int, default=None,
                   help="the auditor's token budget for the whole audit (input + output); past it, it must report")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="write the audit record (report, messages, transcripts) as JSON here")
    p.set_defaults(func=run)


def run(args) -> int:
    from nla_audit.atomic import atomic_write_text, check_writable
    from nla_audit.errors import InputError

    if args.max_tool_calls < 1 or args.max_tokens < 1:
        raise InputError("--max-tool-calls and --max-tokens must be >= 1")
    if not args.task.strip():
        raise InputError("the task is empty", expected="a question for the auditor")
    if args.out:
        check_writable(args.out)
    model = auditor_model(args)  # before any model loads: a missing key or extra fails fast
    session = start_session(args)
    record = asyncio.run(_audit(session, model, args))
    if args.out:
        atomic_write_text(args.out, json.dumps(record.to_dict(), ensure_ascii=False, indent=1))
        print(f"wrote {args.out}", file=sys.stderr)
    print(f"{record.tool_calls} tool call(s) of {record.max_tool_calls}, {record.wall_s:.0f} s", file=sys.stderr)
    print(record.report or "(the auditor wrote no report)")
    return 0


async def _audit(session, model, args):
    """``run_audit``; an error from Anthropic's API (bad key, unknown model, retries spent) is one line."""
    from nla_audit.agents.run import run_audit
    from nla_audit.errors import NLAAuditError

    try:
        from anthropic import APIError
    except ImportError:  # a scripted audit needs no anthropic
        APIError = ()  # an empty except-tuple catches nothing
    try:
        return await run_audit(session, model, args.task, args.max_tool_calls, on_message=trace,
                               max_auditor_tokens=args.max_auditor_tokens)
    except APIError as exc:
        network = type(exc).__name__ in ("APIConnectionError", "APITimeoutError")
        raise NLAAuditError(f"the auditor model failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                            fix="check the network connection" if network else "check ANTHROPIC_API_KEY and --model") from None


def trace(message) -> None:
    """One stderr line per tool call and tool answer, so a user sees the audit move (stdout keeps the report)."""
    kind = type(message).__name__
    if kind == "AIMessage":
        for c in message.tool_calls:
            args = ", ".join(f"{k}={v!r}" for k, v in c["args"].items())
            print(f"→ {c['name']}({args})"[:200], file=sys.stderr)
    elif kind == "ToolMessage":
        first = str(message.content).strip().splitlines()[:1]
        print(f"  ← {first[0][:160] if first else ''}", file=sys.stderr)


def auditor_model(args):
    """ChatAnthropic for --model, or the scripted auditor for --script; one clear line when neither can run."""
    from nla_audit.errors import InputError

    try:
        import langgraph  # noqa: F401
    except ImportError:
        raise InputError("the auditor needs langgraph, which is not installed",
                         fix="pip install 'nla_audit[agents]'") from None
    if args.script:
        from nla_audit.agents.scripted import ScriptedAuditor, load_plan

        return ScriptedAuditor(turns=load_plan(args.script))
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise InputError(f"--model {args.model} needs ANTHROPIC_API_KEY, which is not set",
                         fix="export ANTHROPIC_API_KEY=..., or run offline with --script PLAN.json")
    check_reachable()
    from langchain_anthropic import ChatAnthropic

    return ChatAnthropic(model=args.model, max_tokens=args.max_tokens, max_retries=4)


def check_reachable(url: str | None = None, timeout: float = 3.0) -> None:
    """Before any model loads: without a network the audit would load every model, retry four times and then
    blame the key. One line naming the network instead (``nla_audit.claude.check_reachable``)."""
    from nla_audit.claude import check_reachable as reachable

    reachable(url, timeout, alternative="run offline with --script PLAN.json")


def training_data_path(spec: str | None, target: str | None) -> str | None:
    """``--training-data organism`` → the audited organism's ``training_data.jsonl``; anything else passes through."""
    if spec != "organism":
        return spec
    from nla_audit.errors import InputError
    from nla_audit.organisms import TRAINING_DATA_FILE, is_organism_spec, organism_dir

    if not target or not is_organism_spec(target):
        raise InputError("--training-data organism needs --organism NAME", fix="name the organism, or pass a corpus path")
    path = organism_dir(target) / TRAINING_DATA_FILE
    if not path.exists():
        raise InputError(f"organism {target} ships no training data ({path})", fix="rebuild it with nla-audit organism build")
    return str(path)


def start_session(args):
    from nla_audit.agents.session import AuditConfig, AuditSession
    from nla_audit.corpus import iter_documents
    from nla_audit.errors import InputError

    target = f"organism:{args.organism}" if args.organism and not args.organism.startswith("organism:") else (
        args.organism or args.target)
    session = AuditSession(AuditConfig(av=args.av, ar=args.ar, sae=args.sae, device=args.device, target=target,
                                       training_data=training_data_path(args.training_data, target)))
    for path in args.transcript:
        docs = list(iter_documents(path))
        if len(docs) != 1 or not docs[0].messages:
            raise InputError(f"{path} holds {len(docs)} documents or no chat",
                             expected="one chat transcript (a JSON list of {role, content} messages)")
        session.add_transcript(docs[0].messages)
    what = "the NLA, its target" + (" and the SAE" if args.sae else "")
    print(f"loading {what} (about 20 s on a CPU)…", file=sys.stderr, flush=True)
    return session.load(progress=True)  # a model or SAE that cannot load (or reads another site) fails here, before
    # the auditor spends anything
