from __future__ import annotations

import torch
from torch import nn

from nla_audit.lora import LoRALinear, add_lora, lora_state_dict, merge_lora


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
