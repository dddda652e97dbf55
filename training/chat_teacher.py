"""The offline teacher's text for a position in a chat transcript (**a proxy**, like the text form).

At a chat position a next-token predictor must track more than the last words: whose turn it is, what the
system prompt and the user asked for, what the assistant has written so far, and where in the template the
token sits (the assistant header is where a reply is planned). ``chat_explanation`` states exactly those
facts, read off the ``ChatLayout``, in four short paragraphs; the last one names the final token's role and
the target's own likely next tokens, as the text form does. Quotes are abridged so the explanation stays
within the AV's generation budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SYSTEM_WORDS = 8
REQUEST_HEAD, REQUEST_TAIL = 6, 4
SO_FAR_WORDS = 8


def _words(text: str) -> list[str]:
    return text.replace("\n", " ⏎ ").split()


def quote(text: str) -> str:
    return "“" + " ".join(_words(text)) + "”"


def abridge(text: str, head: int, tail: int = 0) -> str:
    """The first ``head`` and last ``tail`` words, joined by an ellipsis when words were left out."""
    w = _words(text)
    if len(w) <= head + tail:
        return "“" + " ".join(w) + "”"
    return "“" + " ".join(w[:head]) + " … " + " ".join(w[len(w) - tail:]) + "”" if tail else \
        "“" + " ".join(w[:head]) + " …”"


def last_words(text: str, n: int) -> str:
    w = _words(text)
    return ("“… " if len(w) > n else "“") + " ".join(w[-n:]) + "”"


def token_name(text: str) -> str:
    """A token as the explanation names it: quoted, or in words when it is whitespace."""
    if text.strip():
        return quote(text)
    return "a line break" if "\n" in text else "a space"


def _role(m: dict) -> str:
    return {"user": "user", "assistant": "assistant", "system": "system"}.get(m["role"], m["role"])


def _turn_name(layout: Any, index: int) -> str:
    m = layout.messages[index]
    if m["role"] == "system":
        return "the system prompt"
    return f"the {_role(m)}'s message {layout.turn_number(index)}"


def _system_line(layout: Any) -> str:
    sys_msgs = [m for m in layout.messages if m["role"] == "system"]
    if not sys_msgs:
        return "No system prompt."
    if sys_msgs[0].get("implicit"):
        return "Default system prompt."
    return f"System prompt: {abridge(sys_msgs[0]['content'], SYSTEM_WORDS)}."


def _gap(layout: Any, pos: int) -> tuple[int, int]:
    """The run of control tokens around ``pos``: [start, end)."""
    lo, hi = pos, pos + 1
    while lo > 0 and layout.control[lo - 1]:
        lo -= 1
    while hi < len(layout.ids) and layout.control[hi]:
        hi += 1
    return lo, hi


def control_role(layout: Any, pos: int, token_text: str, special: bool) -> str:
    """What a template token does, from where it sits between two messages (any ChatML-like template)."""
    nxt, prev = layout.message[pos], layout.previous_message(pos)
    lo, hi = _gap(layout, pos)
    next_name = _turn_name(layout, nxt) if nxt >= 0 else None
    if pos == lo and prev >= 0:
        return f"closing {_turn_name(layout, prev)}"
    if next_name is None:
        return "template text after the last message"
    role = _role(layout.messages[nxt])
    if pos == hi - 1 and hi < len(layout.ids):
        return f"ending the header: {next_name} starts with the next token"
    if token_text.strip() and token_text.strip().lower() in role:
        return f"naming the next speaker, the {role}"
    if special:
        return f"opening the header of {next_name}"
    return f"a line break before the header of {next_name}" if not token_text.strip() else f"template text before {next_name}"


def _latest_user(layout: Any, before: int) -> int | None:
    for i in range(before - 1, -1, -1):
        if layout.messages[i]["role"] == "user":
            return i
    return None


def _content_so_far(layout: Any, tok: Any, index: int, pos: int) -> str:
    start = next(i for i in range(pos + 1) if layout.message[i] == index and not layout.control[i])
    return tok.decode(list(layout.ids[start: pos + 1]), skip_special_tokens=True)


def chat_explanation(layout: Any, pos: int, tok: Any, next_tokens: Sequence[str], specials: set[int]) -> str:
    """Four paragraphs: where we are, what was asked, what is being written, the final token and what follows."""
    token = tok.decode([layout.ids[pos]])
    nexts = ", ".join(token_name(t) for t in next_tokens)
    cur = layout.message[pos]
    if layout.control[pos]:
        prev = layout.previous_message(pos)
        where = "Chat template" + (f" after {_turn_name(layout, prev)}" if prev >= 0 else " at the start") + \
            (f", before {_turn_name(layout, cur)}." if cur >= 0 else ", at the end of the transcript.")
        final = f"Final token {token_name(token)}, {control_role(layout, pos, token, layout.ids[pos] in specials)}."
        doing = None
        upto = cur if cur >= 0 else len(layout.messages)
    else:
        m = layout.messages[cur]
        where = f"Chat, inside {_turn_name(layout, cur)}."
        doing = f"{_role(m).capitalize()} so far: {last_words(_content_so_far(layout, tok, cur, pos), SO_FAR_WORDS)}."
        final = f"Final token {token_name(token)}, in the {_role(m)}'s text."
        upto = cur
    user = _latest_user(layout, upto)
    asked = f"User asked: {abridge(layout.messages[user]['content'], REQUEST_HEAD, REQUEST_TAIL)}." if user is not None \
        else "The user has not written yet."
    paras = [f"{where} {_system_line(layout)}", asked]
    if doing and layout.messages[cur]["role"] != "user":
        paras.append(doing)
    elif doing:
        paras[1] = doing  # inside a user message: what the user is writing is the request
    paras.append(f"{final} Likely next: {nexts}.")
    return "\n\n".join(paras)
