"""Quantized (eager mode) shift layers, backed by the QuantizedCPU sparse shift kernel."""


from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from learnable_ops.nn import shift as float_shift
from learnable_ops.ops.pad import normalize_pad_mode


class _QuantizedShiftNd(nn.Module):
    """A sparse shift of a per-tensor quantized (``quint8``/``qint8``) tensor.

    The shift is a pure integer gather of the quantized values by the rounded
    float shifts (half to even); zeros padding fills the zero point, and the
    output keeps the input's scale and zero point, so it equals the float
    sparse shift of the dequantized input exactly. A ``from_conv`` crop/pad and
    stride pooling (rare in quantized models) run on the dequantized values and
    requantize with the input's parameters.
    """

    __constants__ = ["in_channels", "padding_mode"]
    _output_pad: List[int]
    _stride: List[int]
    _FLOAT_MODULE = float_shift._ShiftNd
    ndim = 0

    def __init__(self, in_channels: int, padding_mode: str = "zeros", device=None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.padding_mode = normalize_pad_mode(padding_mode, "padding_mode")
        self.register_buffer("shifts", torch.zeros(in_channels, self.ndim, device=device))
        self._output_pad = []
        self._stride = []

    def _downsample(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        out = torch.ops.learnable_ops.shift(input, self.shifts, self.padding_mode, "sparse")
        if len(self._output_pad) > 0 or len(self._stride) > 0:
            scale, zero_point, dtype = out.q_scale(), out.q_zero_point(), out.dtype
            values = out.dequantize()
            if len(self._output_pad) > 0:
                values = torch.ops.learnable_ops.pad(values, self._output_pad, self.padding_mode)
            if len(self._stride) > 0:
                values = self._downsample(values)
            out = torch.quantize_per_tensor(values, scale, zero_point, dtype)
        return out

    @classmethod
    def from_float(cls, mod: nn.Module, use_precomputed_fake_quant: bool = False):
        """The quantized counterpart of a float sparse shift layer (used by ``convert``)."""
        if not isinstance(mod, cls._FLOAT_MODULE):
            raise TypeError(f"from_float expects a {cls._FLOAT_MODULE.__name__}, got {type(mod).__name__}")
        if mod.mode != "sparse":
            raise ValueError(
                "only sparse shift layers can be quantized (the integer kernel gathers, it does not "
                f"interpolate); got mode={mod.mode!r}"
            )
        q = cls(mod.in_channels, mod.padding_mode, device=mod.weight.device)
        q.shifts.copy_(mod.weight.detach())
        q._output_pad = list(mod._output_pad)
        q._stride = list(mod._stride)
        return q

    def extra_repr(self) -> str:
        return f"{self.in_channels}, padding_mode={self.padding_mode!r}"


class Shift1d(_QuantizedShiftNd):
    """Quantized :class:`learnable_ops.nn.Shift1d` (sparse); input ``(N, C, L)``."""

    ndim = 1
    _FLOAT_MODULE = float_shift.Shift1d

    def _downsample(self, out: torch.Tensor) -> torch.Tensor:
        return F.avg_pool1d(out, self._stride, self._stride, 0, True)


class Shift2d(_QuantizedShiftNd):
    """Quantized :class:`learnable_ops.nn.Shift2d` (sparse); input ``(N, C, H, W)``."""

    ndim = 2
    _FLOAT_MODULE = float_shift.Shift2d

    def _downsample(self, out: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(out, self._stride, self._stride, 0, True)


class Shift3d(_QuantizedShiftNd):
    """Quantized :class:`learnable_ops.nn.Shift3d` (sparse); input ``(N, C, D, H, W)``."""

    ndim = 3
    _FLOAT_MODULE = float_shift.Shift3d

    def _downsample(self, out: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(out, self._stride, self._stride, 0, True)


def _default_mappings() -> dict:
    from torch.ao.quantization.quantization_mappings import get_default_static_quant_module_mappings

    return dict(get_default_static_quant_module_mappings())


quant_mapping = {
    **_default_mappings(),
    float_shift.Shift1d: Shift1d,
    float_shift.Shift2d: Shift2d,
    float_shift.Shift3d: Shift3d,
}
"""torch's default static mappings plus the shift layers, for
``torch.ao.quantization.convert(model, mapping=quant_mapping)``."""
