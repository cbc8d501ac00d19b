"""Shift layers: Sparse Shift (SSL) and Active Shift (ASL) in 1D, 2D and 3D.

A shift layer moves every channel by its own learnable offset per spatial axis
(``out[i] = x(i - s)``), a parameter-light replacement for a depthwise conv.
"""


from collections.abc import Sequence
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from learnable_ops.ops.pad import normalize_pad_mode
from learnable_ops.ops.shift import normalize_shift_mode

INIT_RULES = ("uniform", "uniform_sign")
"""``uniform``: U(-s, s); ``uniform_sign``: U(0, s) times an independent random sign."""

CONV_PADDING_MODES = {"zeros": "zeros", "replicate": "border", "circular": "periodic", "reflect": "reflect"}
"""``nn.Conv*d.padding_mode`` -> shift ``padding_mode`` used by ``from_conv``."""


def _float_tuple(value, name: str, length: int) -> tuple[float, ...]:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a float or a sequence of {length} floats, got bool")
    if isinstance(value, (int, float)):
        values = (float(value),) * length
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != length:
            raise ValueError(f"{name} must have {length} entries (one per spatial axis), got {len(value)}")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise TypeError(f"{name} must contain only numbers, got {value!r}")
        values = tuple(float(v) for v in value)
    else:
        raise TypeError(f"{name} must be a float or a sequence of {length} floats, got {type(value).__name__}")
    if any(not (v >= 0 and v < float("inf")) for v in values):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return values


def conv_resize(conv: nn.Module, ndim: int) -> tuple[str, List[int], List[int], tuple[float, ...]]:
    """How a shift layer reproduces the output shape of depthwise ``conv``.

    Returns ``(padding_mode, output_pad, stride, init_shift)``: the shift's
    padding mode, the crop (negative) or pad of its stride-1 output in
    :func:`torch.nn.functional.pad` order (empty when none), the stride of
    the average pooling (empty when 1) and the init range
    ``dilation * (kernel_size // 2)`` per axis.

    Conv output ``o`` (stride 1) is centred on input ``o - pad_before +
    dilation * ((k - 1) // 2)``, so the shifted signal is cropped by that
    offset at the front and to the conv's length ``L + pad_total - dilation * (k - 1)``.
    """
    if not isinstance(conv, nn.modules.conv._ConvNd) or conv.transposed:
        raise TypeError(f"conv must be an nn.Conv{ndim}d, got {type(conv).__name__}")
    if len(conv.kernel_size) != ndim:
        raise ValueError(f"conv must have {ndim} spatial dimensions, got a kernel of size {conv.kernel_size}")
    if not (conv.groups == conv.in_channels == conv.out_channels):
        raise ValueError(
            "conv must be depthwise (groups == in_channels == out_channels), got "
            f"in_channels={conv.in_channels}, out_channels={conv.out_channels}, groups={conv.groups}"
        )
    if conv.padding_mode not in CONV_PADDING_MODES:
        raise ValueError(f"conv has unsupported padding_mode {conv.padding_mode!r}")
    output_pad: List[int] = []
    for axis in reversed(range(ndim)):
        k, d = conv.kernel_size[axis], conv.dilation[axis]
        span = d * (k - 1)
        if conv.padding == "valid":
            before, total = 0, 0
        elif conv.padding == "same":
            before, total = span // 2, span
        else:
            before, total = conv.padding[axis], 2 * conv.padding[axis]
        crop_before = before - d * ((k - 1) // 2)
        output_pad += [crop_before, total - span - crop_before]
    if all(p == 0 for p in output_pad):
        output_pad = []
    stride = [int(s) for s in conv.stride] if any(s != 1 for s in conv.stride) else []
    init_shift = tuple(float(d * (k // 2)) for k, d in zip(conv.kernel_size, conv.dilation))
    return CONV_PADDING_MODES[conv.padding_mode], output_pad, stride, init_shift


class _ShiftNd(nn.Module):
    __constants__ = ["in_channels", "padding_mode", "mode", "sparsity"]
    _output_pad: List[int]
    _stride: List[int]
    ndim = 0

    def __init__(
        self,
        in_channels: int,
        padding_mode: str = "zeros",
        mode: str = "sparse",
        init_shift: float | Sequence[float] = 1.0,
        init_rule: str = "uniform",
        sparsity: float = 5e-4,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels <= 0:
            raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
        if init_rule not in INIT_RULES:
            raise ValueError(f"unknown init_rule {init_rule!r}; valid values are: {', '.join(INIT_RULES)}")
        if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not sparsity >= 0:
            raise ValueError(f"sparsity must be a number >= 0, got {sparsity!r}")
        self.in_channels = in_channels
        self.padding_mode = normalize_pad_mode(padding_mode, "padding_mode")
        self.mode = normalize_shift_mode(mode)
        self.init_shift = _float_tuple(init_shift, "init_shift", self.ndim)
        self.init_rule = init_rule
        self.sparsity = float(sparsity)
        self.weight = nn.Parameter(torch.empty(in_channels, self.ndim, device=device, dtype=dtype))
        self._output_pad = []
        self._stride = []
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draws the shifts: U(-s, s) per axis (``uniform``) or U(0, s) times an
        independent random sign per channel and axis (``uniform_sign``)."""
        bound = torch.tensor(self.init_shift, dtype=self.weight.dtype, device=self.weight.device)
        with torch.no_grad():
            if self.init_rule == "uniform":
                self.weight.uniform_(-1.0, 1.0).mul_(bound)
            else:
                sign = torch.randint(0, 2, self.weight.shape, device=self.weight.device).to(self.weight.dtype) * 2 - 1
                self.weight.uniform_(0.0, 1.0).mul_(bound).mul_(sign)

    def sparsity_loss(self) -> torch.Tensor:
        """The L1 term ``sparsity * |weight|.sum()``, to add to the training loss."""
        return self.sparsity * self.weight.abs().sum()

    def _downsample(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        out = torch.ops.learnable_ops.shift(input, self.weight, self.padding_mode, self.mode)
        if len(self._output_pad) > 0:
            out = torch.ops.learnable_ops.pad(out, self._output_pad, self.padding_mode)
        if len(self._stride) > 0:
            out = self._downsample(out)
        return out

    @classmethod
    def from_conv(cls, conv: nn.Module, mode: str = "sparse", init_rule: str = "uniform", sparsity: float = 5e-4):
        """A shift layer that replaces depthwise ``conv`` with the same output shape.

        The shifted output is cropped (or padded with the layer's padding mode)
        to the conv's stride-1 output, then average-pooled over the stride
        window (``ceil_mode``, so the length is the conv's). The shifts are
        drawn in ``dilation * (kernel_size // 2)``; the conv's padding mode maps
        zeros -> zeros, replicate -> border, circular -> periodic, reflect ->
        reflect. The conv's weights and bias are not used.

        Args:
            conv: a depthwise ``nn.Conv{n}d`` (``groups == in_channels == out_channels``),
                any kernel size, padding (ints, ``'same'`` or ``'valid'``),
                stride and dilation.
            mode: ``sparse`` or ``active``.
            init_rule: ``uniform`` or ``uniform_sign``.
            sparsity: L1 strength of :meth:`sparsity_loss`.

        Returns:
            The layer, on the conv's device and dtype.
        """
        padding_mode, output_pad, stride, init_shift = conv_resize(conv, cls.ndim)
        layer = cls(
            conv.in_channels,
            padding_mode=padding_mode,
            mode=mode,
            init_shift=init_shift,
            init_rule=init_rule,
            sparsity=sparsity,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        layer._output_pad = output_pad
        layer._stride = stride
        return layer

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, padding_mode={self.padding_mode!r}, mode={self.mode!r}, sparsity={self.sparsity:g}"
        if self._output_pad:
            text += f", output_pad={tuple(self._output_pad)}"
        if self._stride:
            text += f", stride={tuple(self._stride)}"
        return text


_ARGS_DOC = """
    Args:
        in_channels: C.
        padding_mode: ``zeros``, ``border``, ``periodic``, ``reflect`` or ``symmetric``.
        mode: ``sparse`` (Sparse Shift Layer: the forward rounds each shift half
            to even, the shift gradient is the interpolation derivative at the
            real value) or ``active`` (Active Shift Layer: {interp} interpolation,
            exact gradients).
        init_shift: bound ``s`` of the initial shifts, one float or one per axis.
        init_rule: ``uniform`` (U(-s, s)) or ``uniform_sign`` (U(0, s) times an
            independent random sign per channel and axis).
        sparsity: strength of the L1 term returned by :meth:`sparsity_loss`.
        device: device of ``weight``.
        dtype: dtype of ``weight`` (the input may have another floating dtype).

    Attributes:
        weight: ``(C, {n})`` learnable shifts; column ``k`` moves spatial axis ``k``.

    Shape:
        input ``{shape}``; output the same (or the conv's output shape after
        :meth:`from_conv`).
"""


class Shift1d(_ShiftNd):
    ndim = 1
    __doc__ = "Shifts each channel of a ``(N, C, L)`` tensor by a learnable offset.\n" + _ARGS_DOC.format(
        interp="linear", n=1, shape="(N, C, L)"
    )

    def _downsample(self, out: torch.Tensor) -> torch.Tensor:
        return F.avg_pool1d(out, self._stride, self._stride, 0, True)


class Shift2d(_ShiftNd):
    ndim = 2
    __doc__ = "Shifts each channel of a ``(N, C, H, W)`` tensor by a learnable offset.\n" + _ARGS_DOC.format(
        interp="bilinear", n=2, shape="(N, C, H, W)"
    )

    def _downsample(self, out: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(out, self._stride, self._stride, 0, True)


class Shift3d(_ShiftNd):
    ndim = 3
    __doc__ = "Shifts each channel of a ``(N, C, D, H, W)`` tensor by a learnable offset.\n" + _ARGS_DOC.format(
        interp="trilinear", n=3, shape="(N, C, D, H, W)"
    )

    def _downsample(self, out: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(out, self._stride, self._stride, 0, True)


def sparsity_loss(model: nn.Module) -> torch.Tensor:
    """Sum of :meth:`sparsity_loss` over every shift layer of ``model``.

    Returns:
        A scalar tensor (``0.`` when the model has no shift layer).
    """
    total = None
    for module in model.modules():
        if isinstance(module, _ShiftNd):
            term = module.sparsity_loss()
            total = term if total is None else total + term
    if total is None:
        param = next(model.parameters(), None)
        return torch.zeros((), device=None if param is None else param.device)
    return total
