"""Eval-test fixtures: an untrained tiny NLA over the tiny Llama, and scripted graders for mockllm.

Every scripted ``ModelOutput`` carries an explicit ``ModelUsage``: without it mockllm counts tokens with
tiktoken, which tries to download an encoding (and tests run without a network).
"""

from __future__ import annotations

import re

import pytest


@pytest.fixture(scope="session")
def tiny_nla(tiny_model_dir, tmp_path_factory):
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path_factory.mktemp("tiny_nla"))
    return str(av), str(ar)


def scripted(answer):
    """A mockllm model for the ``grader`` role; ``answer(prompt) -> str`` writes each reply."""
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    def reply(messages, tools, tool_choice, config):
        prompt = messages[-1].text if messages else ""
        out = ModelOutput.from_content("mockllm/model", answer(prompt))
        out.usage = ModelUsage(input_tokens=len(prompt.split()), output_tokens=2, total_tokens=len(prompt.split()) + 2)
        return out

    return get_model("mockllm/model", custom_outputs=reply, memoize=False)


def description(prompt: str) -> str:
    m = re.search(r"<description>\n(.*)\n</description>", prompt, re.DOTALL)
    assert m, "grader prompt has no description block"
    return m.group(1)
