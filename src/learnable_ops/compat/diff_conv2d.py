"""The API of the original DiffConv2d code (stfc-sciml/DifferentialConv2d), on learnable_ops.

``DiffConv2d(kernel_size).conv2d(...)`` and ``DiffConv2dLayer(...)`` accept the
original arguments and compute the same outputs and gradients (stride 1,
dilation 1, full order) through :func:`learnable_ops.diff_conv2d`, which needs
neither index tables nor per-pixel kernels. ``optimized_for`` chose between
two memory/speed trade-offs of the original; there is only one path here, so
it is validated and otherwise ignored. Fixed on the way: a trained edge
kernel with bias works in both modes and the boundary outputs use the edge
bias (the original raised ``IndexError`` in ``'memory'`` mode and silently
kept the interior bias in ``'speed'`` mode), and any float dtype works.
"""

from __future__ import annotations

import torch

from learnable_ops.nn.diffconv import DiffConv2d as _DiffConv2dModule
from learnable_ops.ops._validate import choice
from learnable_ops.ops.diffconv import diff_conv2d

__all__ = ["DiffConv2d", "DiffConv2dLayer"]

OPTIMIZED_FOR = ("speed", "memory")


def _odd_kernel_size(kernel_size) -> int:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    return kernel_size


class DiffConv2d:
    """The original functional object: ``DiffConv2d(kernel_size).conv2d(input, weight, ...)``.

    Args:
        kernel_size: the odd size ``K`` of the square kernels it will be given.
    """

    def __init__(self, kernel_size: int):
        self.kernel_size = _odd_kernel_size(kernel_size)

    def conv2d(
        self,
        input: torch.Tensor,
        weight: torch.Tensor,
        groups: int = 1,
        keep_img_grad_at_invalid: bool = True,
        edge_kernel: torch.Tensor | None = None,
        optimized_for: str = "memory",
    ) -> torch.Tensor:
        """``(N, C_in, H, W)`` x ``(C_out, C_in / groups, K, K)`` -> ``(N, C_out, H, W)``, no bias.

        Args:
            input: ``(N, C_in, H, W)`` with ``H, W >= K``.
            weight: ``(C_out, C_in / groups, K, K)``.
            groups: as in ``F.conv2d``.
            keep_img_grad_at_invalid: see :func:`learnable_ops.diff_conv2d`.
            edge_kernel: the weight of the boundary outputs, or None.
            optimized_for: ``'speed'`` or ``'memory'``; no effect.
        """
        choice(optimized_for, "optimized_for", OPTIMIZED_FOR)
        if weight.dim() != 4 or tuple(weight.shape[2:]) != (self.kernel_size, self.kernel_size):
            raise ValueError(
                f"weight must be (C_out, C_in / groups, {self.kernel_size}, {self.kernel_size}) for this "
                f"DiffConv2d({self.kernel_size}), got {tuple(weight.shape)}"
            )
        return diff_conv2d(
            input, weight, groups=groups, keep_img_grad_at_invalid=keep_img_grad_at_invalid, edge_weight=edge_kernel
        )


class DiffConv2dLayer(_DiffConv2dModule):
    """The original layer's signature on :class:`learnable_ops.nn.DiffConv2d`.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        kernel_size: odd int ``K``.
        groups: as in ``nn.Conv2d``.
        bias: add a learnable bias (and an edge bias with ``train_edge_kernel``).
        keep_img_grad_at_invalid: see :func:`learnable_ops.diff_conv2d`.
        train_edge_kernel: boundary outputs get their own weight and bias.
        optimized_for: ``'speed'`` or ``'memory'``; no effect.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        groups: int = 1,
        bias: bool = True,
        keep_img_grad_at_invalid: bool = True,
        train_edge_kernel: bool = False,
        optimized_for: str = "memory",
    ):
        optimized_for = choice(optimized_for, "optimized_for", OPTIMIZED_FOR)
        super().__init__(
            in_channels,
            out_channels,
            _odd_kernel_size(kernel_size),
            groups=groups,
            bias=bias,
            keep_img_grad_at_invalid=keep_img_grad_at_invalid,
            train_edge_kernel=train_edge_kernel,
        )
        self.optimized_for = optimized_for
