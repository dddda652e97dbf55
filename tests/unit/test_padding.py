"""The one padding helper."""

import pytest
import torch

from nla_audit.padding import pad, pad_batch


def test_left_and_right_padding_with_masks_and_multiples():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=9, multiple=4)
    assert ids.tolist() == [[5, 6, 7, 9], [8, 9, 9, 9]] and mask.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert pad([[1], []], -100, width=3).tolist() == [[1, -100, -100], [-100, -100, -100]]
    assert pad([[1]], 0).dtype == torch.long
    with pytest.raises(ValueError, match="side"):
        pad([[1]], 0, side="middle")
