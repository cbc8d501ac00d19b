"""Functional API: each function wraps one ``torch.ops.learnable_ops`` operator."""

from learnable_ops.ops.dcls import DCLS_VERSIONS, dcls_construct
from learnable_ops.ops.pad import PAD_MODES, pad

__all__ = ["DCLS_VERSIONS", "PAD_MODES", "dcls_construct", "pad"]
