"""Functional API: each function wraps one ``torch.ops.learnable_ops`` operator."""

from learnable_ops.ops.dcls import DCLS_VERSIONS, dcls_construct
from learnable_ops.ops.diffconv import diff_conv2d
from learnable_ops.ops.pad import EXTRAPOLATION_MODES, PAD_MODES, pad
from learnable_ops.ops.shift import SHIFT_MODES, shift

__all__ = ["DCLS_VERSIONS", "EXTRAPOLATION_MODES", "PAD_MODES", "SHIFT_MODES", "dcls_construct", "diff_conv2d", "pad", "shift"]
