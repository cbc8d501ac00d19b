"""Functional API: each function wraps one ``torch.ops.learnable_ops`` operator."""

from learnable_ops.ops.dcls_sparse import SPARSE_VERSIONS, dcls_sparse_depthwise
from learnable_ops.ops.depthwise import depthwise_conv1d, depthwise_conv2d
from learnable_ops.ops.pad import PAD_MODES, pad

__all__ = [
    "PAD_MODES",
    "SPARSE_VERSIONS",
    "dcls_sparse_depthwise",
    "depthwise_conv1d",
    "depthwise_conv2d",
    "pad",
]
