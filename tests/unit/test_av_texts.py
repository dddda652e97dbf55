"""AR-SFT data from the AV's own samples: chunked, resumable, doc-split, never from held-out data."""

from __future__ import annotations

import pytest
import torch

from nla_audit.errors import ConfigError, InputError


@pytest.fixture
def rl_data(tiny_model_dir, tmp_path):
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.models import load_target
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar
    from tests.builders import text_corpus

    base = tmp_path / "rl.parquet"
    extract_activations(ExtractConfig(out=str(base), corpus=str(text_corpus(tmp_path / "c.jsonl", 12)), layer=2,
                                      min_position=5, positions_per_doc=3), target=load_target(str(tiny_model_dir)),
                        progress=False)
    meta = read_dataset_sidecar(base)
    write_dataset_sidecar(base, {**{k: v for k, v in meta.items() if k not in ("kind", "schema_version")},
                                 "stage": "rl"})
    return base


@pytest.fixture
def fake_av(monkeypatch):
    """The AV's sampling replaced by a function of the vector (every 4th row untagged); counts calls."""
    from nla_audit.av import ActivationVerbalizer, Explanation

    calls = []

    def explain(self, vectors, **kw):
        calls.append(len(vectors))
        return [Explanation(text=f"v0={float(v[0]):.4f}", raw="", ok=int(abs(float(v[1])) * 1e4) % 4 != 0,
                            truncated=False, n_tokens=3) for v in vectors]

    monkeypatch.setattr(ActivationVerbalizer, "explain", explain)
    return calls


def _cfg(tmp_path, rl_data, av, **kw):
    from nla_audit.training.av_texts import AVTextsConfig

    kw = {"chunk_rows": 8, "eval_fraction": 0.3, "dtype": "float32", "device": "cpu", **kw}
    return AVTextsConfig(av=str(av), data=str(rl_data), out=str(tmp_path / "t" / "av_texts.parquet"), **kw)


def test_writes_doc_disjoint_ar_sft_and_eval_parquets(tiny_model_dir, tmp_path, rl_data, fake_av):
    import pyarrow.parquet as pq

    from nla_audit.sidecar import read_dataset_sidecar
    from nla_audit.training.av_texts import make_av_texts
    from nla_audit.vectors import read_vectors
    from tests.builders import build_tiny_nla

    av, _ = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    counts = make_av_texts(_cfg(tmp_path, rl_data, av), progress=False)
    n = len(read_vectors(rl_data)[0])
    assert counts["sampled"] == n and sum(fake_av) == n
    out, ev = tmp_path / "t" / "av_texts.parquet", tmp_path / "t" / "av_texts.eval.parquet"
    docs = {}
    for path, stage in ((out, "ar_sft"), (ev, "ar_eval")):
        meta = read_dataset_sidecar(path)
        assert (meta["stage"], meta["parent_datasets"], meta["api_summaries"]["teacher"]) == (stage, [str(rl_data)], "av")
        t = pq.read_table(path).to_pydict()
        vecs = read_vectors(path)[0]
        assert all(e == f"v0={v[0]:.4f}" for e, v in zip(t["explanation"], vecs))  # text stays with its vector
        assert all(p.endswith("<summary>") and e in p for p, e in zip(t["prompt"], t["explanation"]))
        docs[stage] = set(t["doc_id"])
    assert docs["ar_sft"] and docs["ar_eval"] and not docs["ar_sft"] & docs["ar_eval"]
    assert 0 < counts["ar_sft"] + counts["ar_eval"] < n  # untagged samples dropped
    assert not (tmp_path / "t" / "av_texts.parquet.parts").exists()


def test_a_stopped_run_resumes_without_resampling_and_refuses_other_settings(tiny_model_dir, tmp_path, rl_data,
                                                                            fake_av):
    from nla_audit.training import av_texts
    from nla_audit.vectors import read_vectors
    from tests.builders import build_tiny_nla

    av, _ = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    cfg = _cfg(tmp_path, rl_data, av)
    vecs = read_vectors(rl_data)[0]
    rows = av_texts.row_order(len(vecs), 0, 0)
    parts = tmp_path / "t" / "av_texts.parquet.parts"
    av_texts._sample_chunks(cfg, vecs, rows[:16], parts, progress=False)  # "stopped" after two chunks
    fake_av.clear()
    av_texts.make_av_texts(cfg, progress=False)
    assert sum(fake_av) == len(vecs) - 16  # only the missing chunks were sampled
    av_texts._sample_chunks(cfg, vecs, rows[:8], parts, progress=False)
    with pytest.raises(InputError, match="other rows"):
        av_texts.make_av_texts(_cfg(tmp_path, rl_data, av, max_rows=10), progress=False)


def test_refuses_the_test_split_and_bad_settings(tiny_model_dir, tmp_path, rl_data):
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar
    from nla_audit.training.av_texts import make_av_texts
    from tests.builders import build_tiny_nla

    av, _ = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    meta = read_dataset_sidecar(rl_data)
    write_dataset_sidecar(rl_data, {**{k: v for k, v in meta.items() if k not in ("kind", "schema_version", "stage")},
                                    "split": {"name": "test"}})
    with pytest.raises(InputError, match="held-out"):
        make_av_texts(_cfg(tmp_path, rl_data, av), progress=False)
    with pytest.raises(ConfigError, match="eval_fraction"):
        _cfg(tmp_path, rl_data, av, eval_fraction=1.0)


def test_cli_refuses_held_out_data_in_one_line(tiny_model_dir, tmp_path, rl_data, capsys):
    from nla_audit.cli import main
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar
    from tests.builders import build_tiny_nla

    av, _ = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    meta = read_dataset_sidecar(rl_data)
    write_dataset_sidecar(rl_data, {**{k: v for k, v in meta.items() if k not in ("kind", "schema_version", "stage")},
                                    "split": {"name": "test"}})
    out = tmp_path / "o" / "t.parquet"
    code = main(["train", "av-texts", "--av", str(av), "--data", str(rl_data), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "held-out" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_too_few_documents_for_the_split_is_a_clear_error(tiny_model_dir, tmp_path, rl_data, fake_av):
    from nla_audit.training.av_texts import make_av_texts
    from tests.builders import build_tiny_nla

    av, _ = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    with pytest.raises(InputError, match="split empty"):
        make_av_texts(_cfg(tmp_path, rl_data, av, max_rows=2, eval_fraction=0.01), progress=False)
    assert not (tmp_path / "t" / "av_texts.parquet").exists()


@pytest.fixture
def fake_nla(monkeypatch):
    """k samples per row with set reconstructions: sample 2 is the activation itself (untagged on rows whose v[1]
    is an even number of 1e-4 steps), sample 1 the activation plus a fixed offset, every other one its negation.
    The AR's pick is then known: sample 2 where tagged, else sample 1."""
    from nla_audit.ar import ActivationReconstructor
    from nla_audit.av import ActivationVerbalizer, Explanation

    store, k = [], 4

    def explain(self, vectors, **kw):
        out = []
        for i, v in enumerate(vectors):
            j, untag = i % k, int(abs(float(v[1])) * 1e4) % 2 == 0
            store.append(v.clone())
            out.append(Explanation(text=f"{len(store) - 1}|s{j}", raw="", ok=not (j == 2 and untag), truncated=False,
                                   n_tokens=3))
        return out

    def reconstruct(self, texts, batch_size=32):
        rows = []
        for t in texts:
            n, j = t.split("|s")
            v = store[int(n)].float()
            rows.append(v if j == "2" else v + v.norm() * torch.ones_like(v) / len(v) ** 0.5 if j == "1" else -v)
        return torch.stack(rows)

    monkeypatch.setattr(ActivationVerbalizer, "explain", explain)
    monkeypatch.setattr(ActivationReconstructor, "reconstruct", reconstruct)
    return k


def test_av_sft_stage_keeps_the_sample_the_ar_reconstructs_closest(tiny_model_dir, tmp_path, rl_data, fake_nla):
    """Expert-iteration data: one AV-SFT row per activation, whose response is the AR's pick among the k samples
    (never an untagged one), with the AV's injection facts in the sidecar so `train av-sft` can read it."""
    import pyarrow.parquet as pq

    from nla_audit.sidecar import read_dataset_sidecar, read_model_sidecar
    from nla_audit.training.av_texts import make_av_texts
    from nla_audit.vectors import read_vectors
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    counts = make_av_texts(_cfg(tmp_path, rl_data, av, stage="av_sft", best_of=fake_nla, ar=str(ar),
                                temperature=0.7), progress=False)
    out = tmp_path / "t" / "av_texts.parquet"
    n = len(read_vectors(rl_data)[0])
    assert counts["sampled"] == counts["av_sft"] == n  # every row has a tagged sample
    assert counts["mse_kept"] < counts["mse_first"]
    t = pq.read_table(out).to_pydict()
    vecs = read_vectors(out)[0]
    picks = [r.split("|s")[1].split("\n")[0] for r in t["response"]]
    untagged_best = [int(abs(float(v[1])) * 1e4) % 2 == 0 for v in vecs]
    assert picks == ["1" if u else "2" for u in untagged_best] and any(untagged_best) and not all(untagged_best)
    assert all(r.startswith("<explanation>\n") and r.endswith("\n</explanation>") for r in t["response"])
    meta = read_dataset_sidecar(out)
    assert meta["stage"] == "av_sft" and meta["api_summaries"]["best_of"] == fake_nla
    assert meta["tokens"] == read_model_sidecar(av, "av").tokens.to_dict()
    assert not (tmp_path / "t" / "av_texts.eval.parquet").exists()


def test_best_of_settings_are_checked_and_resuming_with_others_is_refused(tiny_model_dir, tmp_path, rl_data,
                                                                          fake_nla):
    from nla_audit.training import av_texts
    from nla_audit.vectors import read_vectors
    from tests.builders import build_tiny_nla

    av, ar = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    with pytest.raises(ConfigError, match="best_of >= 2"):
        _cfg(tmp_path, rl_data, av, stage="av_sft")
    with pytest.raises(ConfigError, match="needs an ar"):
        _cfg(tmp_path, rl_data, av, best_of=4)
    with pytest.raises(ConfigError, match="stage"):
        _cfg(tmp_path, rl_data, av, stage="rl")
    cfg = _cfg(tmp_path, rl_data, av, stage="av_sft", best_of=fake_nla, ar=str(ar))
    vecs = read_vectors(rl_data)[0]
    parts = tmp_path / "t" / "av_texts.parquet.parts"
    av_texts._sample_chunks(cfg, vecs, av_texts.row_order(len(vecs), 0, 0)[:8], parts, progress=False)
    with pytest.raises(InputError, match="other settings"):
        av_texts.make_av_texts(_cfg(tmp_path, rl_data, av, stage="av_sft", best_of=fake_nla, ar=str(ar),
                                    temperature=1.0), progress=False)
