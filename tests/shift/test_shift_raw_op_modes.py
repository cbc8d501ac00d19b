"""The raw shift ops refuse the pad op's 'polynomial' mode, which is not a shift padding mode."""
import pytest
import torch

import learnable_ops  # noqa: F401  (registers the ops)


@pytest.mark.parametrize("mode", ["sparse", "active"])
def test_raw_ops_reject_polynomial(mode):
    x, s = torch.randn(1, 2, 5, 5), torch.zeros(2, 2)
    with pytest.raises(ValueError, match="padding_mode 'polynomial' is not a shift padding mode"):
        torch.ops.learnable_ops.shift(x, s, "polynomial", mode)
    with pytest.raises(ValueError, match="padding_mode 'polynomial'"):
        torch.ops.learnable_ops.shift_input_backward(x, s, "polynomial", mode)
    with pytest.raises(ValueError, match="padding_mode 'polynomial'"):
        torch.ops.learnable_ops.shift_shifts_backward(x, x, s, "polynomial")


def test_functional_rejects_polynomial():
    with pytest.raises(ValueError, match="padding_mode"):
        learnable_ops.shift(torch.randn(1, 2, 5, 5), torch.zeros(2, 2), "polynomial")
