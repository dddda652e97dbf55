"""Every task end to end, offline, on the tiny model: scripted graders (mockllm) whose answers fix the
expected score, so the assertions check scoring, not just completion."""

from __future__ import annotations

import re

import pytest
from inspect_ai import eval as inspect_eval
from inspect_ai.log import read_eval_log

from nla_audit.evals._registry import classification, cot_hints, sandbagging, suffix_prediction, user_modeling
from nla_audit.evals._results import grader_agreement, results_frame
from tests.evals.conftest import description, scripted

# Tasks are passed as functions: under pytest the repo root is on sys.path, so importlib.metadata finds the
# stale ./nla_audit.egg-info and inspect does not namespace them as nla_audit/<task>; the registry name is
# tested through the real `inspect eval` command in a subprocess (test_inspect_cli_by_registry_name).

LETTERS = "ABCDEFGHIJ"


def run(task, roles=None, **params):
    log_dir = params.pop("log_dir")
    log = inspect_eval(task, task_args=params, model_roles=roles, display="none", log_dir=log_dir, max_samples=16)[0]
    assert log.status == "success", log.error
    return log


def scores(log, name):
    return [s.scores[name] for s in log.samples]


def frame_row(log, grader):
    df = results_frame([log])
    return df[(df["group"] == "all") & (df["grader"] == grader)].iloc[0]


def test_classification_with_scripted_grader(tiny_nla, tmp_path):
    av, ar = tiny_nla
    log = run(classification, {"grader": scripted(lambda p: "ANSWER: A")}, av=av, ar=ar, grader="both",
              n=2, max_new_tokens=6, log_dir=str(tmp_path))
    expected = sum(s.target == "A" for s in log.samples) / len(log.samples)
    assert len(log.samples) == 10 and {"embed_grader", "model_grader"} <= set(log.samples[0].scores)
    assert frame_row(log, "model")["score"] == pytest.approx(expected)
    assert log.eval.metadata["checkpoint"] and log.eval.metadata["layer"] == 2
    rec = log.samples[0].scores["model_grader"].metadata
    assert rec["fve_nrm"] is not None and "position" in rec and rec["choice"] == 0
    embed_a = sum(s.scores["embed_grader"].metadata["choice"] == 0 for s in log.samples) / len(log.samples)
    agree = grader_agreement([log]).iloc[0]
    assert agree["agreement"] == pytest.approx(embed_a) and agree["n"] == 10
    reread = read_eval_log(log.location)  # the .eval file opens (what `inspect view` reads)
    assert reread.samples and reread.eval.task.endswith("classification")


def test_classification_probe_ceiling(tiny_nla, tmp_path):
    av, ar = tiny_nla
    log = run(classification, av=av, ar=ar, explainer="probe", n=3, probe_train=20,
              log_dir=str(tmp_path))
    sc = scores(log, "probe")
    assert len(sc) == 15 and all(len(s.metadata["probe_scores"]) == len(x.choices) for s, x in zip(sc, log.samples))
    row = frame_row(log, "probe")
    assert row["score"] == pytest.approx(sum(s.value for s in sc) / 15) and row["checkpoint"] == "-"
    assert 0.0 <= row["ci_low"] <= row["score"] <= row["ci_high"] <= 1.0


def test_suffix_prediction_text_reader_with_lookup_grader(tiny_nla, tmp_path):
    """A grader that recognises the context scores 1.0; the same grader answering the next letter scores 0.0."""
    from nla_audit.evals.suffix_prediction.task import SPEC

    av, ar = tiny_nla
    items = [it for it in SPEC.load(0).items if it["split"] == "eval"]
    key = {it["text"][-150:]: it["target"] for it in items}

    def answer(shift):
        def reply(prompt):
            desc = description(prompt)
            t = next(v for k, v in key.items() if desc.endswith(k))
            return f"ANSWER: {LETTERS[(t + shift) % 10]}"
        return reply

    right = run(suffix_prediction, {"grader": scripted(answer(0))}, av=av, ar=ar, explainer="text",
                grader="model", n=2, log_dir=str(tmp_path))
    wrong = run(suffix_prediction, {"grader": scripted(answer(1))}, av=av, ar=ar, explainer="text",
                grader="model", n=2, log_dir=str(tmp_path))
    assert frame_row(right, "model")["score"] == 1.0 and frame_row(wrong, "model")["score"] == 0.0
    assert frame_row(right, "model")["chance"] == pytest.approx(0.1) and len(right.samples) == 10


def test_user_modeling_floor_uses_other_items(tiny_nla, tmp_path):
    av, ar = tiny_nla
    log = run(user_modeling, {"grader": scripted(lambda p: "ANSWER: B")}, av=av, ar=ar,
              explainer="nla-shuffled", grader="model", n=2, max_new_tokens=6, log_dir=str(tmp_path))
    sc = scores(log, "model_grader")
    assert all(s.metadata["shuffled_from"] != x.id for s, x in zip(sc, log.samples))
    assert all(s.metadata["token"] for s in sc)  # the explained token is logged
    expected = sum(x.target == "B" for x in log.samples) / len(log.samples)
    assert frame_row(log, "model")["score"] == pytest.approx(expected)
    groups = set(results_frame([log])["group"])
    assert {"gender", "occupation", "nationality", "religion", "all"} <= groups


def _hint_reader(prompt: str) -> str:
    """Reads the transcript: does the marker sit on the shown correct answer in the answered questions?"""
    desc = description(prompt)
    blocks = re.findall(r"What is (\d) \+ (\d)\?\n(.*?)\nAnswer: \(([A-D])\)", desc)
    on_correct = [re.search(r"\(([A-D])\) \d+ ■", opts).group(1) == ans for _, _, opts, ans in blocks]
    return "ANSWER: A" if on_correct and all(on_correct) else "ANSWER: B"


def test_cot_hints_gap(tiny_nla, tmp_path):
    av, ar = tiny_nla
    reader = run(cot_hints, {"grader": scripted(_hint_reader)}, av=av, ar=ar, explainer="text",
                 grader="model", n=6, log_dir=str(tmp_path))
    row = frame_row(reader, "model")
    assert row["metric"] == "gap" and row["score"] == 1.0 and row["n"] == 6
    gap = reader.results.scores[0].metrics
    assert gap["gap"].value == 1.0 and gap["p_pos"].value == 1.0 and gap["p_neg"].value == 0.0
    blind = run(cot_hints, {"grader": scripted(lambda p: "ANSWER: A")}, av=av, ar=ar, explainer="nla",
                grader="model", n=4, max_new_tokens=6, log_dir=str(tmp_path))
    assert frame_row(blind, "model")["score"] == 0.0 and blind.results.scores[0].metrics["p_neg"].value == 1.0


def test_sandbagging_negative_control(tiny_nla, tmp_path):
    av, ar = tiny_nla
    log = run(sandbagging, {"grader": scripted(lambda p: "ANSWER: A")}, av=av, ar=ar, explainer="nla",
              grader="model", n=4, allow_base=True, max_new_tokens=6, log_dir=str(tmp_path))
    sc = scores(log, "model_grader")
    assert all(s.metadata["answer"] is not None and "answered_correctly" in s.metadata for s in sc)
    assert all(s.metadata["token"].strip() == s.metadata["answer"] for s in sc)  # the target's own answer token
    assert log.results.scores[0].metrics["gap"].value == 0.0 and log.results.scores[0].metrics["p_pos"].value == 1.0


def test_inspect_cli_by_registry_name(tiny_model_dir, tmp_path):
    """`inspect eval nla_audit/<task>` through the entry point, offline, with the default offline grader."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    inspect_bin = Path(sys.executable).parent / "inspect"
    cmd = [str(inspect_bin), "eval", "nla_audit/user_modeling", "-T", "explainer=text", "-T", f"model={tiny_model_dir}",
           "-T", "n=1", "--log-dir", str(tmp_path), "--display", "none"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    logs = list(tmp_path.glob("*.eval"))
    assert len(logs) == 1
    log = read_eval_log(str(logs[0]))
    assert log.status == "success" and log.eval.task == "nla_audit/user_modeling" and len(log.samples) == 4
    assert frame_row(log, "embed")["n"] == 4


class _StubSAE:
    """Stands in for nla_audit.baselines.SAEExplainer (tested in tests/unit/test_sae.py): same interface."""

    name = "sae"

    def __init__(self, site):
        self.site = site

    def describe(self, vectors, **_):
        return ["latent 12 (cooking, recipes): 3.1" for _ in range(len(vectors))]


def test_sae_explainer_plugs_in_and_checks_its_site(tiny_nla, tiny_model_dir, tmp_path, monkeypatch):
    import nla_audit.evals._runner as runner_mod
    from nla_audit.errors import InputError

    av, ar = tiny_nla
    monkeypatch.setattr(runner_mod, "load_sae_explainer", lambda path, device: _StubSAE((str(tiny_model_dir), 2)))
    log = run(classification, {"grader": scripted(lambda p: "ANSWER: A" if "cooking" in p else "ANSWER: B")},
              av=av, ar=ar, explainer="sae", sae=str(tmp_path / "my_sae"), grader="model", n=1, log_dir=str(tmp_path))
    assert log.eval.metadata["checkpoint"] == "sae:my_sae"
    assert [s.scores["model_grader"].answer for s in log.samples] == ["A"] * 5
    monkeypatch.setattr(runner_mod, "load_sae_explainer", lambda path, device: _StubSAE((str(tiny_model_dir), 1)))
    runner_mod._CACHE.clear()
    with pytest.raises(InputError, match="site mismatch: .* layer 1"):
        classification(av=av, ar=ar, explainer="sae", sae=str(tmp_path / "other_sae"))


def test_sandbagging_implant_recipe_runs_and_unlocks_the_task(tiny_model_dir, tmp_path):
    """Mechanics only (2 steps on the tiny model): the implant writes a marked HF folder the task accepts."""
    from nla_audit.evals.sandbagging.implant import implant

    out = tmp_path / "implanted"
    meta = implant(str(tiny_model_dir), out, steps=2, batch_size=4, progress=False)
    assert (out / "sandbag_implant.json").exists() and (out / "config.json").exists()
    assert set(meta["behaviour_after"]) == {"accuracy_harmful", "accuracy_benign"} and meta["final_loss"] > 0
    log = run(sandbagging, explainer="probe", model=str(out), n=4, probe_train=8, log_dir=str(tmp_path))
    assert log.eval.metadata["model"] == str(out.resolve()) and len(log.samples) == 4
    assert all("answered_correctly" in s.scores["probe"].metadata for s in log.samples)
