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
