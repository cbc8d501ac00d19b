"""Functional API: each function wraps one ``torch.ops.learnable_ops`` operator."""

from learnable_ops.ops.dcls import DCLS_VERSIONS, dcls_construct
from learnable_ops.ops.dcls_sparse import SPARSE_VERSIONS, dcls_sparse_depthwise
from learnable_ops.ops.depthwise import depthwise_conv1d, depthwise_conv2d
from learnable_ops.ops.pad import PAD_MODES, pad
from learnable_ops.ops.shift import SHIFT_MODES, shift

__all__ = ["DCLS_VERSIONS", "PAD_MODES", "dcls_construct", "pad"]
__all__ = ["PAD_MODES", "SHIFT_MODES", "pad", "shift"]
from learnable_ops.ops.diffconv import diff_conv2d
from learnable_ops.ops.pad import EXTRAPOLATION_MODES, PAD_MODES, pad
from learnable_ops.ops.shift import SHIFT_MODES, shift

__all__ = ["EXTRAPOLATION_MODES", "PAD_MODES", "diff_conv2d", "pad"]
__all__ = [
    "PAD_MODES",
    "SPARSE_VERSIONS",
    "dcls_sparse_depthwise",
    "depthwise_conv1d",
    "depthwise_conv2d",
    "pad",
]
__all__ = ["DCLS_VERSIONS", "PAD_MODES", "SHIFT_MODES", "dcls_construct", "pad", "shift"]
__all__ = ["DCLS_VERSIONS", "EXTRAPOLATION_MODES", "PAD_MODES", "SHIFT_MODES", "dcls_construct", "diff_conv2d", "pad", "shift"]
