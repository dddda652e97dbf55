"""``nla-audit steer``: edit the NLA's explanation of one token and continue the text with and without the
edit's steering vector (``nla_audit.steering``)."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("steer", help="steer the target by editing an explanation: AR(edit) - AR(original) at a token")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--transcript", help="JSON chat transcript (a list of {role, content}); a last user turn gets "
                                          "the generation prompt, so the reply is what is steered")
    src.add_argument("--text", help="a raw text string")
    p.add_argument("--position", type=int, default=-1,
                   help="the token to explain and steer from (negative from the end; -1 = the last token)")
    p.add_argument("--edit", required=True, help="the explanation with one idea changed (see it first with --show)")
    p.add_argument("--explanation", default=None, help="the explanation to edit from (default: the NLA's greedy one)")
    p.add_argument("--strength", type=float, default=0.5,
                   help="the vector's norm as a multiple of the activation's (default 0.5: the best measured at one "
                        "token; 0.25-1 is the useful range)")
    p.add_argument("--onward", action="store_true",
                   help="add the vector at every token after --position too, generated ones included (default: at "
                        "that token only; onward, keep --strength low or the text breaks)")
    p.add_argument("--samples", type=int, default=1, help="continuations per side (more than 1 needs --temperature)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--av", default=None, help="AV checkpoint (default: the shipped NLA)")
    p.add_argument("--ar", default=None, help="AR checkpoint (default: the shipped NLA)")
    p.add_argument("--model", default=None, help="target to steer (default: the NLA's base; or a fine-tune of it, "
                                                 "e.g. organism:NAME)")
    p.add_argument("--device", default=None)
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=run)


def _ids(args, tok) -> list[int]:
    from nla_audit.corpus import iter_documents
    from nla_audit.errors import InputError
    from nla_audit.steering import chat_prompt_ids

    if args.text is not None:
        if not args.text.strip():
            raise InputError("--text is empty", expected="a non-empty string")
        return tok(args.text, add_special_tokens=False)["input_ids"]
    docs = list(iter_documents(args.transcript))
    if len(docs) != 1 or not docs[0].messages:
        raise InputError(f"{args.transcript} holds {len(docs)} documents or no chat",
                         expected="one chat transcript (a JSON list of {role, content} messages)")
    return chat_prompt_ids(tok, list(docs[0].messages))


def run(args) -> int:
    from nla_audit.errors import InputError
    from nla_audit.nla import NLA
    from nla_audit.steering import compare

    if not args.edit.strip():
        raise InputError("--edit is empty", expected="the explanation with one idea changed")
    if args.samples < 1 or args.max_new_tokens < 1 or args.temperature < 0 or (args.samples > 1 and args.temperature <= 0):
        raise InputError(f"--samples {args.samples} --temperature {args.temperature}",
                         expected="--samples >= 1 (more than 1 with --temperature > 0), --max-new-tokens >= 1")
    print("loading the NLA and its target (about 20 s on a CPU)…", file=sys.stderr, flush=True)
    nla = NLA.load(args.av, args.ar, device=args.device)
    target = None
    if args.model:
        from nla_audit.nla import load_compatible_target

        target = load_compatible_target(args.model, nla)
    ids = _ids(args, nla.target.tokenizer)
    res = compare(nla, ids, args.position, args.edit, args.strength, args.samples, args.max_new_tokens,
                  args.temperature, args.explanation, target, args.onward)
    if args.json:
        print(json.dumps(res.to_dict(), ensure_ascii=False))
        return 0
    from rich.console import Console
    from rich.table import Table

    con = Console()
    con.print(f"[bold]token {res.position}[/bold] {res.token!r}; strength {res.strength} × the activation norm")
    con.print(f"[bold]explanation[/bold]: {res.explanation.strip()}")
    con.print(f"[bold]edit[/bold]: {res.edit.strip()}")
    table = Table("sample", "original", "steered", show_lines=True)
    for i, (a, b) in enumerate(zip(res.original, res.steered)):
        table.add_row(str(i), a, b)
    con.print(table)
    return 0
