from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def embedded_target():
    from nla_audit.models import load_target

    return load_target("default", dtype="float32")
