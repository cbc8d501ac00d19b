"""Compatibility with the original implementations: checkpoint loaders, and drop-in APIs for
their users (:mod:`learnable_ops.compat.torchshifts`, :mod:`learnable_ops.compat.diff_conv2d`)."""

from learnable_ops.compat.dcls import load_dcls_state_dict
from learnable_ops.compat import diff_conv2d

__all__ = ["diff_conv2d", "load_dcls_state_dict"]
