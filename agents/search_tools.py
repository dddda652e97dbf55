"""The auditor's search tools: where in a transcript the NLA reads an idea, and what the training data says.

* ``nla_search`` ranks every position of a transcript by how well the NLA's explanation there matches a query,
  by meaning (the packaged MiniLM encoder, ``nla_audit.encoder``). The paper's auditor used such a search to
  find the token where a hidden goal is represented without reading every explanation. Explaining every
  position is the cost (a few seconds a token on a CPU), paid once: the session caches explanations.
* ``search_training_data`` finds documents of the target's training data that contain every word of a query.
  It exists only when the audit grants data access (``AuditConfig.training_data``), as in the paper's
  data-access condition.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from nla_audit.agents.session import AuditSession

MAX_HITS = 10
SNIPPET_CHARS = 240


def search_tools(session: AuditSession) -> list[Any]:
    """``nla_search`` always; ``search_training_data`` only with ``training_data`` in the session's config."""
    from nla_audit.agents.tools import AuditToolError, _fmt, _tok, _transcript, recoverable

    cfg = session.config

    @recoverable
    async def nla_search(transcript_id: str, query: str, top_k: int = 5) -> str:
        """Find the tokens of a transcript where the NLA's explanation best matches an idea, by meaning.

        Every token of the transcript is explained once (slow the first time: seconds per token; later searches
        of the same transcript are fast), then ranked by similarity to the query.

        Args:
            transcript_id: a transcript id such as "t0".
            query: the idea to look for, e.g. "answering in French" or "the user is a child".
            top_k: how many positions to list (1 to 10).

        Returns:
            The best-matching positions, each with its token, similarity, fve_nrm and explanation.
        """
        if not query.strip():
            raise AuditToolError("the query is empty: describe the idea to look for, e.g. 'talking about cats'")
        if not 1 <= top_k <= MAX_HITS:
            raise AuditToolError(f"top_k = {top_k}: ask for 1 to {MAX_HITS} positions")
        tr = await session.run(_transcript, session, transcript_id)
        if len(tr.ids) > cfg.search_max_tokens:
            raise AuditToolError(f"{transcript_id} has {len(tr.ids)} tokens, more than the {cfg.search_max_tokens} "
                                 "a search explains: use explain on chosen positions instead")
        positions = list(range(1, len(tr.ids)))
        rows = await session.run(session.explain_positions, transcript_id, positions)
        order = await session.run(rank_by_meaning, query, [r.explanation for r in rows])
        out = [f"{transcript_id}: {len(positions)} positions searched for {query!r}"]
        for i, sim in order[:top_k]:
            p, r = positions[i], rows[i]
            out.append(f"[{p}] {_tok(session, tr.ids, p)} similarity {sim:.2f} fve_nrm {_fmt(r.fve_nrm)}\n"
                       f"{r.explanation.strip()}")
        return "\n\n".join(out)

    tools = [nla_search]
    if cfg.training_data is None:
        return tools

    @recoverable
    async def search_training_data(query: str, limit: int = 5) -> str:
        """Search the target model's training data for documents that contain every word of a query
        (case-insensitive), to check where a behaviour came from.

        Args:
            query: words to look for, e.g. "always recommend" or "secret".
            limit: how many matching documents to show (1 to 10).

        Returns:
            How many documents match, and a snippet around the first match in each shown document.
        """
        words = query.lower().split()
        if not words:
            raise AuditToolError("the query is empty: give one or more words to look for")
        if not 1 <= limit <= MAX_HITS:
            raise AuditToolError(f"limit = {limit}: ask for 1 to {MAX_HITS} documents")
        docs = await session.run(training_texts, cfg.training_data)
        hits = [(doc_id, text, chat) for doc_id, text, chat in docs if all(w in text.lower() for w in words)]
        out = [f"{len(hits)} of {len(docs)} training documents contain all of {words}"]
        out += [f"[{doc_id}{' · chat' if chat else ''}] …{snippet(text, words[0])}…" for doc_id, text, chat in hits[:limit]]
        return "\n".join(out)

    return [*tools, search_training_data]


def rank_by_meaning(query: str, texts: list[str]) -> list[tuple[int, float]]:
    """(index, cosine similarity) of each text to the query under the sentence encoder, best first."""
    from nla_audit.encoder import encode, tail_words

    emb = encode([query] + [tail_words(t) for t in texts])
    sims = (emb[1:] @ emb[0]).tolist()
    return sorted(enumerate(sims), key=lambda x: -x[1])


@lru_cache(maxsize=4)
def training_texts(source: str) -> list[tuple[str, str, bool]]:
    """(document id, text, whether it is a chat) of a corpus, chats flattened to "role: content" lines; read once
    per source. The chat flag is shown with each hit: a chat that shows a behaviour is an example of it, a
    document that describes it may be its cause."""
    from nla_audit.corpus import iter_documents

    out = []
    for doc in iter_documents(source):
        text = (doc.text or "") if doc.messages is None else "\n".join(f"{m['role']}: {m['content']}" for m in doc.messages)
        out.append((doc.id, text, doc.messages is not None))
    return out


def snippet(text: str, word: str) -> str:
    """About ``SNIPPET_CHARS`` characters of ``text`` around the first occurrence of ``word``, on one line, cut
    at whole words and carried on to the end of its sentence when that is near: a quote cut mid-word ("partn")
    loses the fact an auditor quotes it for."""
    at = max(0, text.lower().find(word))
    lo = max(0, at - SNIPPET_CHARS // 2)
    hi = min(len(text), lo + SNIPPET_CHARS)
    if lo > 0 and not text[lo - 1].isspace():  # start at the next word
        gap = re.search(r"\s", text[lo:at])
        lo = lo + gap.end() if gap else lo
    if hi < len(text):  # on to the sentence's end when it is near, else to the word's end
        tail = text[hi:hi + SNIPPET_CHARS // 2]
        stop = re.search(r"[.!?](?=\s|$)", tail) or re.search(r"(?=\s)|$", tail)
        hi += stop.end() if stop else 0
    return " ".join(text[lo:hi].split())
