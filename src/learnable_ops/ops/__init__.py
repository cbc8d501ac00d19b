"""Functional API: each function wraps one ``torch.ops.learnable_ops`` operator."""

from learnable_ops.ops.pad import PAD_MODES, pad
from learnable_ops.ops.shift import SHIFT_MODES, shift

__all__ = ["PAD_MODES", "SHIFT_MODES", "pad", "shift"]
