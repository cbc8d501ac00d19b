"""Modules: each wraps the functional ops of one family."""

from learnable_ops.nn.shift import Shift1d, Shift2d, Shift3d, sparsity_loss

__all__ = ["Shift1d", "Shift2d", "Shift3d", "sparsity_loss"]

from learnable_ops.nn import quantized  # noqa: E402  (learnable_ops.nn.quantized.Shift2d, quant_mapping)
