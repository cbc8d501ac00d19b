"""``nn.Module`` layers, one file per family."""

from learnable_ops.nn.dcls import Dcls1d, Dcls2_1d, Dcls2d, Dcls2dK1d, Dcls3_1d, Dcls3d
from learnable_ops.nn.diffconv import DiffConv2d
from learnable_ops.nn.shift import Shift1d, Shift2d, Shift3d, sparsity_loss

__all__ = [
    "Dcls1d",
    "Dcls2d",
    "Dcls3d",
    "Dcls2_1d",
    "Dcls3_1d",
    "Dcls2dK1d",
    "DiffConv2d",
    "Shift1d",
    "Shift2d",
    "Shift3d",
    "sparsity_loss",
]

from learnable_ops.nn import quantized  # noqa: E402  (learnable_ops.nn.quantized.Shift2d, quant_mapping)
