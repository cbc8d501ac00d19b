"""Compatibility with other packages: loading their checkpoints into learnable_ops layers, and
drop-in APIs for their users (import the submodule, e.g. ``learnable_ops.compat.torchshifts``)."""

from learnable_ops.compat.dcls import load_dcls_state_dict

__all__ = ["load_dcls_state_dict"]
