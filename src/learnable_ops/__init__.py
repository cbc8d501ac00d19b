"""learnable_ops: learnable spatial operators for PyTorch.

Three families share one native extension and one convention (a shift ``s``
moves content towards higher indices, ``out[i] = x(i - s)``):

* DCLS, dilated convolution with learnable spacings;
* Sparse and Active Shift layers;
* DiffConv2d, padding-free convolution by polynomial extrapolation.
"""

from learnable_ops._ext import build_info, ops_with_kernels
from learnable_ops.ops import (
    DCLS_VERSIONS,
    EXTRAPOLATION_MODES,
    PAD_MODES,
    SHIFT_MODES,
    dcls_construct,
    diff_conv2d,
    pad,
    shift,
)

from learnable_ops import nn  # noqa: E402  (layers; import after the ops they use)
from learnable_ops import compat, dcls  # noqa: E402
from learnable_ops.convert import ConversionReport, convert  # noqa: E402
from learnable_ops.nn import sparsity_loss  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "DCLS_VERSIONS",
    "EXTRAPOLATION_MODES",
    "PAD_MODES",
    "SHIFT_MODES",
    "ConversionReport",
    "build_info",
    "convert",
    "dcls_construct",
    "diff_conv2d",
    "nn",
    "ops_with_kernels",
    "pad",
    "shift",
    "sparsity_loss",
]
