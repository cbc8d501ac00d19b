"""Compatibility layers for users of the original implementations (import the submodule, e.g.
``learnable_ops.compat.torchshifts``)."""
"""Loading checkpoints of other packages into learnable_ops layers."""

from learnable_ops.compat.dcls import load_dcls_state_dict

__all__ = ["load_dcls_state_dict"]
