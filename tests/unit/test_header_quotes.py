"""The header-claims benchmark's grader (benchmarks/header_quotes.py): what counts as a right turn and a quote hit."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from header_quotes import content_words, named_turn, quote_scores  # noqa: E402

EXPL = ("Chat template after the user's message 2, before the assistant's message 2. Default system prompt.\n\n"
        "User asked: “Write a Python function that sorts a list”.\n\nFinal token a line break.")


def test_turn_is_read_from_the_template_sentence():
    assert named_turn(EXPL) == 2
    assert named_turn("Final token “ass”.") is None


def test_quote_precision_counts_the_quotes_content_words_found_in_the_request():
    prec, hit = quote_scores(EXPL, "how do I sort a list in python?")
    assert content_words("Write a Python function that sorts a list") == {"write", "python", "function", "sorts", "list"}
    assert (prec, hit) == (2 / 5, True)  # python, list ("sorts" is not "sort": no stemming)
    assert quote_scores(EXPL, "Translate this into French") == (0.0, False)


def test_no_quote_or_only_stopwords_is_not_scored():
    assert quote_scores("Final token “the”.", "anything") == (None, None)
    assert quote_scores("User asked: “Can you do this?”.", "anything at all") == (None, None)
