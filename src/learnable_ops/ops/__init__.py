"""Functional API: each function wraps one ``torch.ops.learnable_ops`` operator."""

from learnable_ops.ops.diffconv import diff_conv2d
from learnable_ops.ops.pad import EXTRAPOLATION_MODES, PAD_MODES, pad

__all__ = ["EXTRAPOLATION_MODES", "PAD_MODES", "diff_conv2d", "pad"]
