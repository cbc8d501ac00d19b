"""Drop-in API for users of ``torchshifts`` (DeadAt0m/ActiveSparseShifts-PyTorch).

The modules take torchshifts' arguments and return ``(out, loss)`` from
``forward``, with ``loss = sparsity_term * |weight|.sum()`` (``None`` when
``sparsity_term == 0``), but compute with learnable_ops' kernels, so:

* the shift gradients have the right sign and axis, the input gradient is the
  exact adjoint, and CPU results do not depend on the number of threads;
* the active shift is a true interpolated shift by ``weight`` (torchshifts
  sampled at ``i - floor(w) + frac(w)``, which equals ``i - w`` only for
  integer ``w``);
* ``emulate_dw`` honours dilation and over-padding and applies the conv's
  padding mode (torchshifts ignored those), and ``init_thumb_rule=2`` takes
  effect (a random sign per channel and axis);
* padding names are case-insensitive.
"""

import warnings
from typing import List, Optional, Tuple

import torch
from torch import nn

from learnable_ops.nn import quantized as _quantized
from learnable_ops.nn import shift as _shift

PADDING_MODES = ("zeros", "border", "periodic", "reflect", "symmetric")
"""torchshifts' padding names, in the order of its integer ids 0..4."""


def _padding_name(padding) -> str:
    if isinstance(padding, int) and not isinstance(padding, bool):
        if not 0 <= padding < len(PADDING_MODES):
            raise ValueError(f"padding id must be in 0..4, got {padding}")
        return PADDING_MODES[padding]
    if not isinstance(padding, str) or padding.lower() not in PADDING_MODES:
        raise ValueError(f"unknown padding {padding!r}; valid values are: {', '.join(PADDING_MODES)}")
    return padding.lower()


def _emulated_conv(in_channels: int, emulate_dw: dict, ndim: int) -> nn.Module:
    """The depthwise conv described by torchshifts' ``emulate_dw`` dict (never run)."""
    if "kernel_size" not in emulate_dw:
        raise ValueError("emulate_dw must contain 'kernel_size'")
    unknown = set(emulate_dw) - {"kernel_size", "stride", "padding", "dilation", "padding_mode", "init_thumb_rule_type"}
    if unknown:
        raise ValueError(f"emulate_dw has unknown keys {sorted(unknown)}")
    conv_cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[ndim - 1]
    return conv_cls(
        in_channels,
        in_channels,
        emulate_dw["kernel_size"],
        stride=emulate_dw.get("stride", 1),
        padding=emulate_dw.get("padding", 0),
        dilation=emulate_dw.get("dilation", 1),
        groups=in_channels,
        bias=False,
        padding_mode=emulate_dw.get("padding_mode", "zeros"),
        device="meta",
    )


class _CompatShiftNd(_shift._ShiftNd):
    def __init__(
        self,
        in_channels: int,
        padding="zeros",
        init_shift=1,
        sparsity_term: float = 5e-4,
        active_flag: bool = False,
        emulate_dw: Optional[dict] = None,
        init_thumb_rule: int = 1,
    ) -> None:
        if init_thumb_rule not in (1, 2):
            raise ValueError(f"init_thumb_rule must be 1 or 2, got {init_thumb_rule!r}")
        padding_mode = _padding_name(padding)
        output_pad: List[int] = []
        stride: List[int] = []
        if emulate_dw is not None:
            conv_padding_mode, output_pad, stride, init_shift = _shift.conv_resize(
                _emulated_conv(in_channels, emulate_dw, self.ndim), self.ndim
            )
            if "padding_mode" in emulate_dw:
                padding_mode = conv_padding_mode
        elif isinstance(init_shift, (list, tuple)) and len(init_shift) > self.ndim:
            warnings.warn(f"init_shift has more than {self.ndim} entries; the extra ones are ignored", stacklevel=2)
            init_shift = tuple(init_shift[: self.ndim])
        super().__init__(
            in_channels,
            padding_mode=padding_mode,
            mode="active" if active_flag else "sparse",
            init_shift=init_shift,
            init_rule="uniform" if init_thumb_rule == 1 else "uniform_sign",
            sparsity=sparsity_term,
        )
        self._output_pad = output_pad
        self._stride = stride

    def forward(self, input: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:  # type: ignore[override]
        out = super().forward(input)
        loss: Optional[torch.Tensor] = None
        if self.sparsity != 0.0:
            loss = self.sparsity_loss()
        return out, loss


class Shift1d(_CompatShiftNd):
    """torchshifts ``Shift1d(in_channels, padding, init_shift, sparsity_term, active_flag, emulate_dw,
    init_thumb_rule)``; input ``(N, C, L)``, ``forward`` returns ``(out, loss)``."""

    ndim = 1
    _downsample = _shift.Shift1d._downsample


class Shift2d(_CompatShiftNd):
    """torchshifts ``Shift2d``; input ``(N, C, H, W)``, ``forward`` returns ``(out, loss)``."""

    ndim = 2
    _downsample = _shift.Shift2d._downsample


class Shift3d(_CompatShiftNd):
    """torchshifts ``Shift3d``; input ``(N, C, D, H, W)``, ``forward`` returns ``(out, loss)``."""

    ndim = 3
    _downsample = _shift.Shift3d._downsample


class _QuantizedCompatMixin:
    def forward(self, input: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        return super().forward(input), None

    @classmethod
    def from_float(cls, mod: nn.Module, use_precomputed_fake_quant: bool = False):
        """Like torchshifts, an active layer quantizes to the rounded (sparse) shift."""
        if not isinstance(mod, cls._FLOAT_MODULE):
            raise TypeError(f"from_float expects a {cls._FLOAT_MODULE.__name__}, got {type(mod).__name__}")
        q = cls(mod.in_channels, mod.padding_mode, device=mod.weight.device)
        q.shifts.copy_(mod.weight.detach())
        q._output_pad = list(mod._output_pad)
        q._stride = list(mod._stride)
        return q


class QuantizedShift1d(_QuantizedCompatMixin, _quantized.Shift1d):
    """Quantized :class:`Shift1d`; ``forward`` returns ``(out, None)``."""

    _FLOAT_MODULE = Shift1d


class QuantizedShift2d(_QuantizedCompatMixin, _quantized.Shift2d):
    """Quantized :class:`Shift2d`; ``forward`` returns ``(out, None)``."""

    _FLOAT_MODULE = Shift2d


class QuantizedShift3d(_QuantizedCompatMixin, _quantized.Shift3d):
    """Quantized :class:`Shift3d`; ``forward`` returns ``(out, None)``."""

    _FLOAT_MODULE = Shift3d


quant_mapping = {
    **_quantized.quant_mapping,
    Shift1d: QuantizedShift1d,
    Shift2d: QuantizedShift2d,
    Shift3d: QuantizedShift3d,
}
"""For ``torch.ao.quantization.convert(model, mapping=quant_mapping)``, as in torchshifts."""
