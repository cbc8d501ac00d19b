"""Compatibility with the original implementations: checkpoint loaders, and drop-in layers for
their users (import the submodule, e.g. ``learnable_ops.compat.torchshifts``)."""

from learnable_ops.compat.dcls import load_dcls_state_dict

__all__ = ["load_dcls_state_dict"]
