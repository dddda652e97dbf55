"""``nla-audit``: one thin CLI over the library.

Core subcommands live in this package; the optional subpackages (training, evals, SAE baseline) contribute
theirs through the ``nla_audit.commands`` entry-point group, so the core never imports them. A user error
(``NLAAuditError``) prints one line and exits non-zero, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import os
import sys

from nla_audit.errors import NLAAuditError

CORE_COMMANDS = ("extract", "split", "info", "explain", "score", "export", "demo", "sae", "steer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nla-audit", description="Natural Language Autoencoders for auditing LMs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in CORE_COMMANDS:
        importlib.import_module(f"nla_audit.cli.{name}").register(sub)
    for ep in md.entry_points(group="nla_audit.commands"):
        try:
            ep.load()(sub)
        except ImportError as exc:  # an optional extra is missing: say so only if that command is used
            _register_missing(sub, ep.name, exc)
    show_defaults(parser)
    return parser


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default in its help line (unless the help already names it, or there is none to show);
    epilogs keep their own line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default in (None, False, argparse.SUPPRESS) or not action.option_strings
                or default == []):
            return text
        return f"{text} (default: {default})" if text else f"default: {default}"


def show_defaults(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every subcommand parser below it the ``HelpFormatter``."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if action.help is None and action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            action.help = f"default: {action.default}"  # argparse prints nothing for an option without help
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                show_defaults(child)


def _register_missing(sub, name: str, exc: ImportError) -> None:
    p = sub.add_parser(name, help=f"(unavailable: {exc.name} is not installed)")

    def run(_args):
        raise NLAAuditError(f"`nla-audit {name}` needs {exc.name}, which is not installed",
                            fix="pip install 'nla_audit[evals,sae,agents]'")

    p.set_defaults(func=run)




# Options whose value may start with "-" (negative positions such as "-4:" or "-3,-1"); argparse would read
# such a value as an option, so ``join_negative_values`` glues it to its flag first.
NEGATIVE_VALUE_OPTIONS = ("--positions",)


def join_negative_values(argv: list[str]) -> list[str]:
    """``["--positions", "-4:"]`` → ``["--positions=-4:"]``, for the options above and values that look like
    positions (a minus sign, then a digit or a colon)."""
    out: list[str] = []
    it = iter(range(len(argv)))
    for i in it:
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg in NEGATIVE_VALUE_OPTIONS and len(nxt) > 1 and nxt[0] == "-" and (nxt[1].isdigit() or nxt[1] == ":"):
            out.append(f"{arg}={nxt}")
            next(it, None)
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(join_negative_values(list(sys.argv[1:] if argv is None else argv)))
    try:
        return int(args.func(args) or 0)
    except NLAAuditError as exc:
        print(f"nla-audit {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"nla-audit {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `nla-audit organism list --json | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
