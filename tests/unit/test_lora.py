from __future__ import annotations

import pytest
import torch
from torch import nn

from nla_audit.lora import LoRALinear, add_lora, lora_state_dict, merge_lora, merged_copy, sync_merged


def test_merge_matches_unmerged_and_starts_at_base():
    net = nn.Sequential(nn.Linear(8, 8))
    net[0].q_proj = None
    base_out = net(torch.ones(2, 8))
    wrapped = nn.Module()
    wrapped.q_proj = nn.Linear(8, 8)
    x = torch.randn(3, 8)
    ref = wrapped.q_proj(x)
    add_lora(wrapped, rank=2, alpha=4.0, targets=("q_proj",))
    assert isinstance(wrapped.q_proj, LoRALinear)
    torch.testing.assert_close(wrapped.q_proj(x), ref)  # B = 0 at init
    nn.init.normal_(wrapped.q_proj.lora_B)
    unmerged = wrapped.q_proj(x)
    assert set(lora_state_dict(wrapped)) == {"q_proj.lora_A", "q_proj.lora_B"}
    merge_lora(wrapped)
    assert isinstance(wrapped.q_proj, nn.Linear)
    torch.testing.assert_close(wrapped.q_proj(x), unmerged, atol=1e-5, rtol=1e-5)
    assert base_out.shape == (2, 8)


def test_only_lora_is_trainable():
    m = nn.Module()
    m.q_proj, m.other = nn.Linear(4, 4), nn.Linear(4, 4)
    add_lora(m, rank=1, alpha=1.0, targets=("q_proj",))
    assert sorted(n for n, p in m.named_parameters() if p.requires_grad) == ["q_proj.lora_A", "q_proj.lora_B"]


def _two_adapters() -> nn.Module:
    m = nn.Module()
    m.q_proj, m.v_proj = nn.Linear(6, 6), nn.Linear(6, 5)
    add_lora(m, rank=2, alpha=4.0, targets=("q_proj", "v_proj"))
    return m


def test_merged_twin_follows_the_adapters_only_after_a_sync():
    torch.manual_seed(0)
    m = _two_adapters()
    twin = merged_copy(m)
    assert not any(isinstance(x, LoRALinear) for x in twin.modules())
    assert not any(p.requires_grad for p in twin.parameters())
    assert isinstance(m.q_proj, LoRALinear)  # the source keeps its adapters
    x = torch.randn(3, 6)
    with torch.no_grad():
        for p in (m.q_proj.lora_B, m.v_proj.lora_B):  # an "optimiser step"
            p.normal_()
    assert not torch.allclose(twin.q_proj(x), m.q_proj(x), atol=1e-4)  # stale until synced
    sync_merged(m, twin)
    for name in ("q_proj", "v_proj"):
        torch.testing.assert_close(getattr(twin, name)(x), getattr(m, name)(x), atol=1e-5, rtol=1e-5)


def test_sync_refuses_a_twin_of_another_shape():
    m = _two_adapters()
    other = nn.Module()
    other.q_proj = nn.Linear(6, 6)
    with pytest.raises(TypeError, match="v_proj"):
        sync_merged(m, other)
