"""Shared fixtures: offline, seeded, and a tiny random Llama that uses the real SmolLM2 tokenizer."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.builders import build_tiny_model_dir  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A 4-block, d=64 random Llama saved as an HF folder with the real SmolLM2 tokenizer."""
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_target(tiny_model_dir):
    from nla_audit.models import load_target

    return load_target(str(tiny_model_dir))


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch):
    """Point NLA_AUDIT_CACHE at a temp dir, but reuse the already converted embedded model and corpus."""
    from nla_audit.paths import cache_dir

    real = cache_dir()
    monkeypatch.setenv("NLA_AUDIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    for sub in ("models", "corpora"):
        if (real / sub).exists():
            (tmp_path / "cache" / sub).symlink_to(real / sub)
    return tmp_path / "cache"


@pytest.fixture()
def unreachable_api(monkeypatch):
    """A canary API key (fresh per test, never key-shaped) and an Anthropic base URL where nothing listens."""
    import uuid

    from tests.builders import closed_port

    port = closed_port()
    monkeypatch.setenv("ANTHROPIC_API_KEY", "canary-" + uuid.uuid4().hex)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{port}")
    return port
