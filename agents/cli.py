"""``nla-audit audit TASK``: an auditor probes the target with the NLA, SAE and chat tools, and writes its report
with the whole record of what it did. The auditor is Claude through langchain-anthropic (``--model``), or, offline,
the systematic investigator (``--investigator``, a deterministic proxy for an LLM auditor) or a fixed plan of tool
calls (``--script``).

Registered through the ``nla_audit.commands`` entry point, so the core never imports this package.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

DEFAULT_AUDITOR = "claude-sonnet-4-5"
DEFAULT_TOOL_CALLS = 20
AUTO = "auto"  # --investigator without a value: chat+nla, or chat+nla+sae with --sae


def register(sub) -> None:
    p = sub.add_parser("audit", help="let an auditor (Claude, or offline a proxy) investigate the target with "
                                     "NLA / SAE / chat tools")
    p.add_argument("task", help="what to investigate, e.g. 'Does the model hide a goal when asked about X?'")
    who = p.add_argument_group("auditor (one of)")
    who.add_argument("--model", default=None,
                     help=f"Claude model for the auditor (default: {DEFAULT_AUDITOR}; needs ANTHROPIC_API_KEY)")
    who.add_argument("--investigator", nargs="?", const=AUTO, default=None, metavar="CONDITION",
                     help="offline, no key: the systematic investigator, a deterministic proxy for an LLM auditor "
                          "(a fixed recipe, not Claude) with the tools of CONDITION: chat, chat+sae, chat+nla or "
                          "chat+nla+sae (default: chat+nla; chat+nla+sae with --sae). Data access follows "
                          "--training-data. Before the task, write --investigator=CONDITION")
    who.add_argument("--script", default=None, metavar="PLAN.json",
                     help="offline: replay a fixed plan of tool calls instead of a model (see README, 'Auditor')")
    p.add_argument("--background", default=None, metavar="FILE",
                   help="with --investigator: the base model's evidence it contrasts with (default: the "
                        "investigator_background.json shipped with the NLA)")
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
    p.add_argument("--max-tool-calls", type=int, default=None,
                   help=f"tool-call budget (default: {DEFAULT_TOOL_CALLS}; with --investigator, what its recipe needs)")
    p.add_argument("--max-tokens", type=int, default=4096, help="auditor's output tokens per turn")
    p.add_argument("--max-auditor-tokens", type=int, default=None,
                   help="the auditor's token budget for the whole audit (input + output); past it, it must report")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="write the audit record (report, messages, transcripts) as JSON here")
    p.set_defaults(func=run)


def run(args) -> int:
    from nla_audit.agents.tools import audit_tools
    from nla_audit.atomic import atomic_write_text, check_writable
    from nla_audit.errors import InputError

    if (args.max_tool_calls is not None and args.max_tool_calls < 1) or args.max_tokens < 1:
        raise InputError("--max-tool-calls and --max-tokens must be >= 1")
    if not args.task.strip():
        raise InputError("the task is empty", expected="a question for the auditor")
    if args.out:
        check_writable(args.out)
    check_auditor_choice(args)
    model = auditor_model(args)  # before any model loads: a missing key, extra or background fails fast
    settings, max_calls, allowed = audit_limits(args, model)
    session = start_session(args, settings)
    tools = None if allowed is None else [t for t in audit_tools(session) if t.__name__ in allowed]
    record = asyncio.run(_audit(session, model, args, max_calls, tools))
    if args.out:
        atomic_write_text(args.out, json.dumps(record.to_dict(), ensure_ascii=False, indent=1))
        print(f"wrote {args.out}", file=sys.stderr)
    print(f"{record.tool_calls} tool call(s) of {record.max_tool_calls}, {record.wall_s:.0f} s", file=sys.stderr)
    print(record.report or "(the auditor wrote no report)")
    return 0


def check_auditor_choice(args) -> None:
    """At most one of --model, --investigator and --script names the auditor; --background belongs to the
    investigator. One line each, before anything loads (argparse's own group error is a usage block)."""
    from nla_audit.errors import InputError

    given = [flag for flag, value in (("--model", args.model), ("--investigator", args.investigator),
                                      ("--script", args.script)) if value is not None]
    if len(given) > 1:
        raise InputError(f"{' and '.join(given)} each name an auditor",
                         expected="one of --model (Claude), --investigator (offline proxy) or --script (a fixed plan)")
    if args.background is not None and args.investigator is None:
        raise InputError("--background is the investigator's", fix="add --investigator, or drop --background")


async def _audit(session, model, args, max_tool_calls: int, tools=None):
    """``run_audit``; an error from Anthropic's API (bad key, unknown model, retries spent) is one line."""
    from nla_audit.agents.run import run_audit
    from nla_audit.errors import NLAAuditError

    try:
        from anthropic import APIError
    except ImportError:  # a scripted or investigator audit needs no anthropic
        APIError = ()  # an empty except-tuple catches nothing
    try:
        return await run_audit(session, model, args.task, max_tool_calls, tools=tools, on_message=trace,
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
    """ChatAnthropic for --model, the investigator for --investigator, or the scripted auditor for --script; one
    clear line when none can run."""
    from nla_audit.errors import InputError

    try:
        import langgraph  # noqa: F401
    except ImportError:
        raise InputError("the auditor needs langgraph, which is not installed",
                         fix="pip install 'nla_audit[agents]'") from None
    if args.script:
        from nla_audit.agents.scripted import ScriptedAuditor, load_plan

        return ScriptedAuditor(turns=load_plan(args.script))
    if args.investigator is not None:
        return offline_investigator(args)
    model = args.model or DEFAULT_AUDITOR
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise InputError(f"--model {model} needs ANTHROPIC_API_KEY, which is not set",
                         fix="export ANTHROPIC_API_KEY=..., or run offline with --investigator or --script PLAN.json")
    check_reachable()
    from langchain_anthropic import ChatAnthropic

    return ChatAnthropic(model=model, max_tokens=args.max_tokens, max_retries=4)


def offline_investigator(args):
    """The systematic investigator under the condition --investigator names (``auto``: chat+nla, or chat+nla+sae
    when --sae gives it an SAE to read), with data access when --training-data grants it. Its background loads
    here, so a missing one fails before any model does."""
    from nla_audit.agents.investigator import investigator
    from nla_audit.errors import InputError

    condition = args.investigator.strip().lower()
    if condition == AUTO:
        condition = "chat+nla+sae" if args.sae else "chat+nla"
    if "sae" in condition.split("+") and not args.sae:
        raise InputError(f"--investigator {condition} reads SAE features, but no --sae is given",
                         fix="add --sae default (the shipped SAE) or --sae FOLDER, or pick a condition without sae")
    return investigator(condition, data=args.training_data is not None, background=args.background)


def audit_limits(args, model) -> tuple[dict, int, set[str] | None]:
    """(``AuditConfig`` settings, tool-call budget, tool names allowed or None for all) of this audit. The
    investigator reads replies and explanations as long as its background's, gets the budget its recipe needs
    unless --max-tool-calls says otherwise, and only the tools of its condition."""
    if args.investigator is None:
        return {}, args.max_tool_calls or DEFAULT_TOOL_CALLS, None
    from nla_audit.agents.investigator import budget, condition_tools, recipe_settings

    need = budget(model.config)
    if args.max_tool_calls is not None and args.max_tool_calls < need:
        print(f"note: the investigator's recipe needs {need} tool calls; with {args.max_tool_calls} it reports on "
              "what it read by then", file=sys.stderr)
    return (recipe_settings(model.background), args.max_tool_calls or need,
            condition_tools(model.config.condition, model.config.data))


def check_reachable(url: str | None = None, timeout: float = 3.0) -> None:
    """Before any model loads: without a network the audit would load every model, retry four times and then
    blame the key. One line naming the network instead (``nla_audit.claude.check_reachable``)."""
    from nla_audit.claude import check_reachable as reachable

    reachable(url, timeout, alternative="run offline with --investigator or --script PLAN.json")


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


def start_session(args, settings: dict | None = None):
    """The audit's session, loaded; ``settings``: extra ``AuditConfig`` fields (the investigator's recipe)."""
    from nla_audit.agents.session import AuditConfig, AuditSession
    from nla_audit.corpus import iter_documents
    from nla_audit.errors import InputError

    target = f"organism:{args.organism}" if args.organism and not args.organism.startswith("organism:") else (
        args.organism or args.target)
    session = AuditSession(AuditConfig(av=args.av, ar=args.ar, sae=args.sae, device=args.device, target=target,
                                       training_data=training_data_path(args.training_data, target),
                                       **(settings or {})))
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
