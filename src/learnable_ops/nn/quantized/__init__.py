"""Quantized (eager mode, QuantizedCPU) counterparts of the float layers."""

from learnable_ops.nn.quantized.shift import Shift1d, Shift2d, Shift3d, quant_mapping

__all__ = ["Shift1d", "Shift2d", "Shift3d", "quant_mapping"]
