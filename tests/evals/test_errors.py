"""Bad input: one clear line (``nla_audit.errors``), exit code != 0, nothing run."""

from __future__ import annotations

import json

import pytest

from nla_audit.cli import main
from nla_audit.errors import InputError


def _cli(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_unknown_task(capsys):
    code, _, err = _cli(["eval", "clasification"], capsys)
    assert code == 2 and "unknown eval task clasification" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_layer_mismatch(tiny_nla, capsys, tmp_path):
    av, ar = tiny_nla
    code, _, err = _cli(["eval", "classification", "--av", av, "--ar", ar, "--layer", "3", "--log-dir", str(tmp_path)], capsys)
    assert code == 2 and "reads layer 2" in err and "layer 3" in err
    assert not list(tmp_path.glob("*.eval"))


def test_model_mismatch(tiny_nla, capsys, tmp_path):
    av, ar = tiny_nla
    code, _, err = _cli(["eval", "user_modeling", "--av", av, "--ar", ar, "--model", "default",
                         "--log-dir", str(tmp_path)], capsys)
    assert code == 2 and "HuggingFaceTB/SmolLM2-135M-Instruct" in err and "NLA checkpoint reads" in err


def test_sandbagging_needs_the_implanted_target(tiny_nla, capsys, tmp_path):
    av, ar = tiny_nla
    code, _, err = _cli(["eval", "sandbagging", "--av", av, "--ar", ar, "--log-dir", str(tmp_path)], capsys)
    assert code == 2 and "sandbag_implant.json" in err and "allow_base" in err


def test_implant_refuses_unknown_splits(capsys, tmp_path):
    from nla_audit.evals.sandbagging.implant import main

    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "t"), "--splits", "test"])
    assert exc.value.code == 2 and "--splits 'test'" in capsys.readouterr().err and not (tmp_path / "t").exists()


def test_claude_grader_without_key(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    code, _, err = _cli(["eval", "classification", "--explainer", "text", "--grader", "claude",
                         "--log-dir", str(tmp_path)], capsys)
    assert code == 2 and "grader unavailable" in err and "ANTHROPIC_API_KEY" in err


def test_model_grader_without_role(tiny_nla):
    from nla_audit.evals.classification import classification

    av, ar = tiny_nla
    with pytest.raises(InputError, match="grader unavailable"):
        classification(av=av, ar=ar, grader="model")


def test_bad_parameters(tiny_nla):
    from nla_audit.evals.classification import classification

    av, ar = tiny_nla
    with pytest.raises(InputError, match="unknown explainer"):
        classification(av=av, ar=ar, explainer="nla-random")
    with pytest.raises(InputError, match="unknown task parameter"):
        classification(av=av, ar=ar, nn=3)
    with pytest.raises(InputError, match="only one of av / ar"):
        classification(av=av)


def test_cli_runs_and_prints_rows(tiny_nla, capsys, tmp_path):
    av, ar = tiny_nla
    code, out, err = _cli(["eval", "classification", "--av", av, "--ar", ar, "--explainer", "text,probe",
                           "--limit", "2", "--probe-train", "10", "--json", "--log-dir", str(tmp_path)], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["explainer"], r["grader"]) for r in rows] == [("text", "embed"), ("probe", "probe")]
    assert all(r["n"] == 10 and 0 <= r["score"] <= 1 for r in rows)
    assert len(list(tmp_path.glob("*.eval"))) == 2
    code, out, err = _cli(["eval", "classification", "--av", av, "--ar", ar, "--explainer", "text", "-T", "n=1",
                           "--json", "--log-dir", str(tmp_path)], capsys)  # -T as inspect takes it
    assert code == 0, err
    assert [json.loads(line)["n"] for line in out.splitlines()] == [5]  # one item in each of the 5 groups
    code, _, err = _cli(["eval", "classification", "-T", "nonsense", "--log-dir", str(tmp_path)], capsys)
    assert code == 2 and "not key=value" in err


def test_inspect_cli_prints_a_bad_parameter_as_one_message(tmp_path):
    """`inspect eval nla_audit/<task> -T bogus=1` prints the one-line error, not a traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from inspect_ai._util.error import PrerequisiteError

    from nla_audit.evals.classification import classification

    with pytest.raises(PrerequisiteError):
        classification(bogus=1)
    inspect = Path(sys.executable).with_name("inspect")
    r = subprocess.run([str(inspect), "eval", "nla_audit/classification", "-T", "bogus=1", "--model", "mockllm/model",
                        "--log-dir", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "COLUMNS": "200"})
    out = r.stdout + r.stderr
    assert "unknown task parameter(s) ['bogus']" in out and "Traceback" not in out and len(out.strip().splitlines()) <= 3


def test_limit_as_a_task_parameter_points_to_n(tiny_nla):
    """inspect's --limit counts samples in all; the tasks' n counts items per group: `-T limit` says which is which."""
    from nla_audit.evals.classification import classification

    av, ar = tiny_nla
    with pytest.raises(InputError, match=r"-T limit is not a task parameter.*-T n=N"):
        classification(av=av, ar=ar, limit=3)


def test_eval_help_ties_limit_to_n_and_the_display_is_off_when_piped(capsys):
    import argparse

    from nla_audit.evals.cli import eval_display

    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    assert "-T n=N" in " ".join(capsys.readouterr().out.split())
    assert eval_display(argparse.Namespace(json=True)) == "none"
    assert eval_display(argparse.Namespace(json=False)) == "none"  # pytest captures: not a terminal


def test_claude_grader_without_a_network_says_so_before_any_model(capsys, unreachable_api, tmp_path):
    code, _, err = _cli(["eval", "classification", "--explainer", "text", "--grader", "claude",
                         "--log-dir", str(tmp_path)], capsys)
    assert code == 2 and "cannot reach the Anthropic API" in err and "--grader embed" in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.glob("*.eval"))


def test_inspect_path_names_a_missing_network_for_a_claude_grader(unreachable_api):
    """``inspect eval … -T grader_model=anthropic/…`` bypasses the CLI's check; the task itself says it in one line."""

    from nla_audit.evals._common import _grader_roles
    from nla_audit.evals._runner import EvalConfig

    with pytest.raises(InputError, match="cannot reach the Anthropic API"):
        _grader_roles(EvalConfig(explainer="text", grader="model", grader_model="anthropic/claude-haiku-4-5"))
