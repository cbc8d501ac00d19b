"""Loading checkpoints of other packages into learnable_ops layers, and their APIs
(:mod:`learnable_ops.compat.diff_conv2d`: the original DiffConv2d code's classes)."""

from learnable_ops.compat import diff_conv2d
from learnable_ops.compat.dcls import load_dcls_state_dict

__all__ = ["diff_conv2d", "load_dcls_state_dict"]
