"""Functional API: each function wraps one ``torch.ops.learnable_ops`` operator."""

from learnable_ops.ops.pad import PAD_MODES, pad

__all__ = ["PAD_MODES", "pad"]
