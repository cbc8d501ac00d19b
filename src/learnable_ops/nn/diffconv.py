"""DiffConv2d layer: a 'same'-size convolution whose boundary outputs extrapolate instead of padding."""

from __future__ import annotations

import math

import torch
from torch import nn

from learnable_ops.ops._validate import int_tuple
from learnable_ops.ops.diffconv import diff_conv2d, resolve_order

__all__ = ["DiffConv2d"]


class DiffConv2d(nn.Module):
    """Padding-free 2-D convolution (DiffConv2d), a drop-in for a 'same' ``nn.Conv2d``.

    Interior outputs are those of ``nn.Conv2d``; every output whose window
    leaves the image applies the kernel to the polynomial extrapolation of
    degree ``order`` (default ``K - 1`` per axis) of the nearest samples, see
    :func:`learnable_ops.diff_conv2d`. With ``train_edge_kernel`` the boundary
    outputs use their own ``edge_weight`` (and ``edge_bias`` when ``bias``),
    initialised as copies of ``weight`` and ``bias`` so that training starts
    from plain DiffConv2d.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: odd int or ``(kH, kW)``, both odd.
        stride: int or pair; the output is ``((H - 1) // sH + 1, (W - 1) // sW + 1)``.
        dilation: int or pair; extrapolation runs on the dilated grid.
        groups: as in ``nn.Conv2d``.
        bias: add a learnable bias.
        keep_img_grad_at_invalid: if False, boundary outputs do not contribute
            to the input gradient (they still do to the weights').
        train_edge_kernel: give boundary outputs their own weight (and bias).
        order: extrapolation degree, int or pair, in ``[0, K - 1]``; default ``K - 1``.
        device: factory argument.
        dtype: factory argument.

    Shape:
        input ``(N, C_in, H, W)`` -> output ``(N, C_out, H_out, W_out)``, with
        ``H >= max((kH - 1) * dH + 1, (order_H + 1) * dH)`` and the same for W.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        keep_img_grad_at_invalid: bool = True,
        train_edge_kernel: bool = False,
        order: int | tuple[int, int] | None = None,
        device=None,
        dtype=None,
    ):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})")
        self.kernel_size = int_tuple(kernel_size, "kernel_size", 2)
        if any(k < 1 or k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"kernel_size must be odd along both axes, got {self.kernel_size}")
        self.stride = int_tuple(stride, "stride", 2)
        self.dilation = int_tuple(dilation, "dilation", 2)
        for name, pair in (("stride", self.stride), ("dilation", self.dilation)):
            if min(pair) < 1:
                raise ValueError(f"{name} must be >= 1, got {pair}")
        self.order = resolve_order(order, self.kernel_size)
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.keep_img_grad_at_invalid = bool(keep_img_grad_at_invalid)
        self.train_edge_kernel = bool(train_edge_kernel)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = nn.Parameter(torch.empty(shape, **factory))
        self.bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        if self.train_edge_kernel:
            self.edge_weight = nn.Parameter(torch.empty(shape, **factory))
            self.edge_bias = nn.Parameter(torch.empty(out_channels, **factory)) if bias else None
        else:
            self.register_parameter("edge_weight", None)
            self.register_parameter("edge_bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s initialisation; the edge parameters start as copies."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)
        with torch.no_grad():
            if self.edge_weight is not None:
                self.edge_weight.copy_(self.weight)
            if self.edge_bias is not None:
                self.edge_bias.copy_(self.bias)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return diff_conv2d(
            input,
            self.weight,
            self.bias,
            self.stride,
            self.dilation,
            self.groups,
            self.keep_img_grad_at_invalid,
            self.edge_weight,
            self.order,
            self.edge_bias,
        )

    @classmethod
    def from_conv(
        cls,
        conv: nn.Conv2d,
        keep_img_grad_at_invalid: bool = True,
        train_edge_kernel: bool = False,
        order: int | tuple[int, int] | None = None,
    ) -> DiffConv2d:
        """A DiffConv2d with ``conv``'s weights, stride, dilation and groups.

        ``conv`` must be 'same'-padded (``padding='same'`` or
        ``(kH // 2 * dH, kW // 2 * dW)``) so that the output keeps its size; its
        ``padding_mode`` is replaced by extrapolation. Interior outputs equal
        ``conv``'s.

        Returns:
            The layer, on ``conv``'s device and dtype and in its training mode.
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
        same = tuple(k // 2 * d for k, d in zip(conv.kernel_size, conv.dilation))
        if conv.padding != "same" and tuple(conv.padding) != same:
            raise ValueError(f"conv must be 'same'-padded (padding={same} or 'same'), got padding={conv.padding}")
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            keep_img_grad_at_invalid,
            train_edge_kernel,
            order,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
            if layer.edge_weight is not None:
                layer.edge_weight.copy_(conv.weight)
            if layer.edge_bias is not None:
                layer.edge_bias.copy_(conv.bias)
        layer.train(conv.training)
        return layer

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.order != (self.kernel_size[0] - 1, self.kernel_size[1] - 1):
            s += f", order={self.order}"
        if not self.keep_img_grad_at_invalid:
            s += ", keep_img_grad_at_invalid=False"
        if self.train_edge_kernel:
            s += ", train_edge_kernel=True"
        return s
