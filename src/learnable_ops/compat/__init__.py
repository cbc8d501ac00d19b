"""Compatibility layers for users of the original implementations (import the submodule, e.g.
``learnable_ops.compat.torchshifts``)."""
