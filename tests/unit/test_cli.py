"""Bad input: one clear line on stderr, exit code != 0, no traceback, no partial output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nla_audit.cli import main
from tests.builders import text_corpus, write_jsonl


def _run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.fixture()
def corpus(tmp_path):
    return text_corpus(tmp_path / "c.jsonl", n_docs=2)


def _no_partial(tmp_path, name="a.parquet"):
    return not any(p.name.startswith((name, f".{name}")) for p in tmp_path.rglob("*"))


def test_empty_corpus(tmp_path, capsys, tiny_model_dir):
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    code, err = _run(["extract", "--model", str(tiny_model_dir), "--corpus", str(empty), "--out", str(tmp_path / "a.parquet")], capsys)
    assert code == 2 and "holds no documents" in err and "Traceback" not in err and _no_partial(tmp_path)


def test_layer_out_of_range(tmp_path, capsys, tiny_model_dir, corpus):
    code, err = _run(["extract", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--layer", "9",
                      "--out", str(tmp_path / "a.parquet")], capsys)
    assert code == 2 and "layer 9 is out of range" in err and _no_partial(tmp_path)


def test_unknown_model_path(tmp_path, capsys, corpus):
    code, err = _run(["extract", "--model", str(tmp_path / "nope"), "--corpus", str(corpus), "--out",
                      str(tmp_path / "a.parquet")], capsys)
    assert code == 2 and "does not exist" in err


def test_non_utf8_and_short_docs(tmp_path, capsys, tiny_model_dir):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe garbage")
    code, err = _run(["extract", "--model", str(tiny_model_dir), "--corpus", str(bad), "--out", str(tmp_path / "a.parquet")], capsys)
    assert code == 2 and "UTF-8" in err
    short = write_jsonl(tmp_path / "s.jsonl", [{"id": "s", "text": "tiny"}])
    code, err = _run(["extract", "--model", str(tiny_model_dir), "--corpus", str(short), "--out", str(tmp_path / "a.parquet")], capsys)
    assert code == 2 and "min-position" in err and _no_partial(tmp_path)


def test_output_not_writable(tmp_path, capsys, tiny_model_dir, corpus):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    code, err = _run(["extract", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--out",
                      str(blocker / "a.parquet")], capsys)
    assert code == 2 and "cannot create output folder" in err
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):  # root ignores permissions; the blocker case above covers it
            code, err = _run(["extract", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--out", str(ro / "a.parquet")], capsys)
            assert code == 2 and "not writable" in err
    finally:
        ro.chmod(0o700)
    code, err = _run(["extract", "--model", str(tiny_model_dir), "--corpus", str(corpus), "--out", str(tmp_path)], capsys)
    assert code == 2 and "is a directory" in err


def test_explain_bad_inputs(tmp_path, capsys, tiny_model_dir):
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path / "nla")
    code, err = _run(["explain", "--av", str(av), "--ar", str(ar), "--text", " "], capsys)
    assert code == 2 and "--text is empty" in err
    code, err = _run(["explain", "--av", str(av), "--ar", str(ar), "--text", "a b c", "--positions", "7"], capsys)
    assert code == 2 and "out of range" in err
    code, err = _run(["explain", "--av", str(av), "--ar", str(ar), "--text", "a b c", "--best-of", "4"], capsys)
    assert code == 2 and "--temperature" in err and len(err.strip().splitlines()) == 1
    assert main(["explain", "--av", str(av), "--ar", str(ar), "--text", "a b c", "--best-of", "3", "--temperature", "1",
                 "--pick", "consensus", "--max-new-tokens", "4", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rows and all(r["pick"] == "consensus" and r["best_of"] == 3 for r in rows)
    code, err = _run(["explain", "--av", str(av), "--ar", str(ar), "--text", "a b c", "--retries", "-1"], capsys)
    assert code == 2 and "--retries" in err and len(err.strip().splitlines()) == 1
    assert main(["explain", "--av", str(av), "--ar", str(ar), "--text", "a b c", "--retries", "1", "--max-new-tokens", "4",
                 "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert rows and all(r["retries"] == 1 and not r["ok"] for r in rows)  # the untrained AV never closes its tag
    code, err = _run(["explain", "--av", str(tmp_path), "--ar", str(ar), "--text", "a b c"], capsys)
    assert code == 2 and "nla_meta.yaml" in err
    (tmp_path / "t.json").write_text(json.dumps([]))
    code, err = _run(["explain", "--av", str(av), "--ar", str(ar), "--transcript", str(tmp_path / "t.json")], capsys)
    assert code == 2


def test_info_json_subprocess_and_no_traceback(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-m", "nla_audit.cli", "info", "--json"], capture_output=True, text=True, env=env)
    info = json.loads(out.stdout)
    assert out.returncode == 0 and info["default_layer"] == 20 and "torch" in info["versions"]
    bad = subprocess.run([sys.executable, "-m", "nla_audit.cli", "split", str(tmp_path / "x.parquet")],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_split_is_by_document(tmp_path, tiny_target, corpus):
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.split import split_dataset
    from nla_audit.vectors import read_vectors

    base = tmp_path / "base.parquet"
    extract_activations(ExtractConfig(out=str(base), corpus=str(text_corpus(tmp_path / "c8.jsonl", 12)), layer=1,
                                      min_position=5, positions_per_doc=3), target=tiny_target, progress=False)
    counts = split_dataset(base, tmp_path, {"a": 0.5, "b": 0.5}, seed=1)
    assert sum(counts.values()) == 36
    ids = {s: set(read_vectors(tmp_path / f"base.{s}.parquet", ["doc_id"])[1]["doc_id"]) for s in ("a", "b")}
    assert not ids["a"] & ids["b"]


def test_train_rl_takes_the_readme_flags(tmp_path, monkeypatch, capsys):
    """The README's `train rl --av --ar` line parses into the GRPO config (flags over --set)."""
    import nla_audit.training.grpo as grpo

    seen = {}
    monkeypatch.setattr(grpo, "train_rl", lambda cfg, resume, progress: seen.setdefault("cfg", cfg) and tmp_path)
    code = main(["train", "rl", "--data", "d.parquet", "--av", "runs/av/av", "--ar", "runs/ar/ar", "--run-dir",
                 str(tmp_path / "rl"), "--steps", "3", "--set", "ar=ignored", "--quiet"])
    cfg = seen["cfg"]
    assert code == 0 and (cfg.av, cfg.ar, cfg.steps, cfg.data) == ("runs/av/av", "runs/ar/ar", 3, "d.parquet")


def test_negative_positions_parse_as_values():
    from nla_audit.cli import build_parser, join_negative_values

    argv = join_negative_values(["explain", "--text", "x", "--positions", "-4:"])
    assert build_parser().parse_args(argv).positions == "-4:"
    assert join_negative_values(["explain", "--positions", "-3,-1"])[-1] == "--positions=-3,-1"
    assert join_negative_values(["explain", "--positions", "--json"]) == ["explain", "--positions", "--json"]


def test_a_killed_runs_temp_file_is_removed_by_the_next_run(tmp_path):
    from nla_audit.atomic import atomic_write_text

    out = tmp_path / "a.txt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a.txt.{dead.stdout.strip()}.xyz.tmp"  # what a killed writer leaves
    live = tmp_path / f".a.txt.{os.getpid()}.abc.tmp"  # a live writer's (this process)
    stale.write_text("half"), live.write_text("busy")
    atomic_write_text(out, "whole")
    assert out.read_text() == "whole" and not stale.exists() and live.exists()


def test_explain_checks_positions_before_loading_and_names_the_default_system_prompt(tmp_path, capsys, tiny_model_dir,
                                                                                      monkeypatch):
    from nla_audit.nla import NLA
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path / "nla")
    chat = tmp_path / "c.json"
    chat.write_text(json.dumps([{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]))
    load = NLA.load
    monkeypatch.setattr(NLA, "load", classmethod(lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded"))))
    for argv, msg in ((["--text", "a b c", "--positions", "abc"], "not understood"),
                      (["--text", "a b c", "--positions", "header"], "need a chat transcript")):
        code, err = _run(["explain", "--av", str(av), "--ar", str(ar), *argv], capsys)
        assert code == 2 and msg in err and "loaded" not in err
    monkeypatch.setattr(NLA, "load", load)
    code, err = _run(["explain", "--av", str(av), "--ar", str(ar), "--transcript", str(chat), "--positions", "header",
                      "--max-new-tokens", "3", "--json"], capsys)
    assert code == 0 and "inserted its default system prompt" in err


def test_help_lists_every_training_stage_its_config_keys_and_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert all(s in out for s in ("pipeline", "av-texts", "ar-sft", "av-sft", "rl"))
    with pytest.raises(SystemExit):
        main(["train", "rl", "--help"])
    out = capsys.readouterr().out
    assert "config keys" in out and "av_lr=5e-05" in out and "av=<required>" in out
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    assert "--max-new-tokens MAX_NEW_TOKENS default: 150" in " ".join(capsys.readouterr().out.split())


def test_train_names_a_missing_data_file_and_missing_keys(tmp_path, capsys):
    code, err = _run(["train", "rl", "--data", str(tmp_path / "missing.parquet"), "--run-dir", str(tmp_path),
                      "--av", "a", "--ar", "b"], capsys)
    assert code == 2 and "missing.parquet does not exist" in err and "sidecar" not in err
    code, err = _run(["train", "rl", "--data", str(tmp_path / "d.parquet"), "--run-dir", str(tmp_path)], capsys)
    assert code == 2 and "missing required config key(s) ['av', 'ar']" in err and "__init__" not in err


def test_explain_vectors_keeps_provenance_and_warns_nothing(tmp_path, capsys, tiny_model_dir, tiny_target):
    import warnings

    from nla_audit.extract import ExtractConfig, extract_activations
    from tests.builders import build_tiny_nla, text_corpus

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path / "nla")
    data = tmp_path / "a.parquet"
    extract_activations(ExtractConfig(out=str(data), corpus=str(text_corpus(tmp_path / "c.jsonl", n_docs=2)), layer=2,
                                      positions_per_doc=2, min_position=5), target=tiny_target, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's non-writable-array warning would fail here
        code = main(["explain", "--av", str(av), "--ar", str(ar), "--vectors", str(data), "--limit", "3",
                     "--max-new-tokens", "3", "--json"])
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 0 and len(rows) == 3 and all(r["doc_id"].startswith("doc") for r in rows)
    assert all(r["position"] >= 5 and r["token"].startswith("…") for r in rows)


def test_explain_reports_a_position_out_of_range_before_loading(tmp_path, capsys, tiny_model_dir, monkeypatch):
    from nla_audit.nla import NLA
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path / "nla")
    monkeypatch.setattr(NLA, "load", classmethod(lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded"))))
    code, err = _run(["explain", "--av", str(av), "--ar", str(ar), "--text", "a b c", "--positions", "99999"], capsys)
    assert code == 2 and "out of range" in err and "loaded" not in err


def test_score_reports_by_position_kind(tmp_path, capsys, tiny_model_dir):
    from tests.builders import LOREM, build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path / "nla")
    texts = write_jsonl(tmp_path / "t.jsonl", [
        {"id": "t", "text": LOREM},
        {"id": "c", "messages": [{"role": "user", "content": "What is the capital of Spain, please?"},
                                 {"role": "assistant", "content": "It is Madrid, a large and lively city."}]}])
    assert main(["score", "--av", str(av), "--ar", str(ar), "--texts", str(texts), "--positions-per-doc", "8",
                 "--max-new-tokens", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["by_kind"]) == {"text", "content", "control"} and res["n"] == 16
    assert res["by_kind"]["control"]["n"] == 2 and res["by_kind"]["text"]["n"] == 8


def test_explain_rejects_vectors_of_the_wrong_width_before_loading(tmp_path, capsys, tiny_model_dir, monkeypatch):
    import numpy as np

    from nla_audit.nla import NLA
    from nla_audit.vectors import VectorWriter
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path / "nla")
    data = tmp_path / "w.parquet"
    writer = VectorWriter(data, 7)
    writer.write({"activation_vector": np.ones((2, 7)), "doc_id": ["a", "b"], "n_raw_tokens": [3, 4],
                  "detokenized_text_truncated": ["x", "y"], "activation_layer": [2, 2]})
    writer.close()
    monkeypatch.setattr(NLA, "load", classmethod(lambda *a, **k: (_ for _ in ()).throw(AssertionError("loaded"))))
    code, err = _run(["explain", "--av", str(av), "--ar", str(ar), "--vectors", str(data)], capsys)
    assert code == 2 and "have shape (2, 7)" in err and "d_model of this NLA" in err and "loaded" not in err


def test_demo_output_folder_is_ignored_by_git():
    """`./run.sh demo` writes nla_demo/ in the working folder: git must not list it as untracked."""
    from pathlib import Path

    ignore = Path(__file__).resolve().parents[2] / ".gitignore"
    if not ignore.exists():
        pytest.skip("not a source checkout")
    assert "/nla_demo/" in ignore.read_text().split()


def test_progress_is_off_under_json_and_when_stderr_is_not_a_terminal(capsys):
    import argparse

    from nla_audit.cli.explain import _bar
    from nla_audit.progress import RateProgress

    with _bar(argparse.Namespace(json=True)) as bar:
        bar.report(1, 2)
    assert bar._progress is None and bar.items == 1
    with RateProgress("extract", total=3) as bar:  # pytest captures stderr: not a terminal
        bar.advance(3, tokens=30)
    assert bar._progress is not None and bar._progress.disable and capsys.readouterr().err == ""


def test_early_checks_resolve_a_hub_id_like_nla_load(tiny_model_dir, tmp_path, monkeypatch):
    """`--av org/name` (a hub id) goes through resolve_checkpoint for the early width check, not a bare folder read."""
    import argparse

    import nla_audit.checkpoint as checkpoint
    from nla_audit.cli.explain import av_sidecar
    from tests.builders import build_tiny_nla

    av, _ = build_tiny_nla(tiny_model_dir, tmp_path)
    monkeypatch.setattr(checkpoint, "resolve_checkpoint", lambda p: av if str(p) == "someorg/some-av" else p)
    assert av_sidecar(argparse.Namespace(av="someorg/some-av")).role == "av"
