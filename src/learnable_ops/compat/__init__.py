"""Compatibility with the original implementations.

* :func:`load_dcls_state_dict` loads a DCLS 0.1.x checkpoint into our layers;
* ``learnable_ops.compat.torchshifts`` mirrors the torchshifts API;
* ``learnable_ops.compat.diff_conv2d`` mirrors the original DiffConv2d API.

The drop-in layers live in submodules: import them, e.g. ``learnable_ops.compat.torchshifts``.
"""

from learnable_ops.compat.dcls import load_dcls_state_dict

__all__ = ["load_dcls_state_dict"]
