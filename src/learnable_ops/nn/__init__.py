"""``nn.Module`` layers, one file per family."""

from learnable_ops.nn.dcls import Dcls1d, Dcls2_1d, Dcls2d, Dcls2dK1d, Dcls3_1d, Dcls3d
from learnable_ops.nn.diffconv import DiffConv2d

__all__ = ["Dcls1d", "Dcls2d", "Dcls3d", "Dcls2_1d", "Dcls3_1d", "Dcls2dK1d", "DiffConv2d"]
