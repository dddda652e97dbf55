"""Suffix-prediction grading: the offline grader compares the explanation with each candidate continuation
itself; the model grader sees the ten candidates as lettered options."""

from __future__ import annotations


def gloss(item: dict, i: int) -> str:
    return item["options"][i]
