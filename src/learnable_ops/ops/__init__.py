"""Functional API: each function wraps one ``torch.ops.learnable_ops`` operator."""

from learnable_ops.ops.dcls import DCLS_VERSIONS, dcls_construct
from learnable_ops.ops.dcls_sparse import SPARSE_VERSIONS, dcls_sparse_depthwise
from learnable_ops.ops.depthwise import depthwise_conv1d, depthwise_conv2d
from learnable_ops.ops.diffconv import diff_conv2d
from learnable_ops.ops.pad import EXTRAPOLATION_MODES, PAD_MODES, pad
from learnable_ops.ops.shift import SHIFT_MODES, shift

__all__ = [
    "DCLS_VERSIONS",
    "EXTRAPOLATION_MODES",
    "PAD_MODES",
    "SHIFT_MODES",
    "SPARSE_VERSIONS",
    "dcls_construct",
    "dcls_sparse_depthwise",
    "depthwise_conv1d",
    "depthwise_conv2d",
    "diff_conv2d",
    "pad",
    "shift",
]
