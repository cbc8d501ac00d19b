"""Compatibility with the original implementations.

* :func:`load_dcls_state_dict` loads a DCLS 0.1.x checkpoint into our layers;
* ``learnable_ops.compat.torchshifts`` mirrors the torchshifts API;
* ``learnable_ops.compat.diff_conv2d`` mirrors the original DiffConv2d API.
"""

from learnable_ops.compat import diff_conv2d
from learnable_ops.compat.dcls import load_dcls_state_dict

__all__ = ["diff_conv2d", "load_dcls_state_dict"]
