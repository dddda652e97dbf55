"""Prompt templates of the auditor, as package data (read with ``load_prompt``)."""

from __future__ import annotations

from importlib.resources import files


def load_prompt(name: str) -> str:
    return files(__name__).joinpath(f"{name}.md").read_text(encoding="utf-8")
