"""``learnable_ops.diff_conv2d``: padding-free convolution by polynomial extrapolation (DiffConv2d)."""

from __future__ import annotations

import os
import re
import warnings

import torch

from learnable_ops.ops._direct_autograd import (
    add_tangents,
    convolution_tangent,
    direct_autograd,
    register_autograd,
    wants_direct_autograd,
)
from learnable_ops.ops._validate import (
    autocast_dtype,
    check_floating,
    check_rank,
    check_same_device,
    check_tensor,
    int_tuple,
)

_warned_half_precision = False


def _pair(value, name: str, lowest: int) -> tuple[int, int]:
    pair = int_tuple(value, name, 2)
    for v in pair:
        if v < lowest:
            raise ValueError(f"{name} must be >= {lowest}, got {value}")
    return pair


def resolve_order(order, kernel_size: tuple[int, int]) -> tuple[int, int]:
    """Per-axis extrapolation degree: ``K - 1`` by default; validated against the kernel size."""
    if order is None:
        return (kernel_size[0] - 1, kernel_size[1] - 1)
    orders = int_tuple(order, "order", 2)
    for axis, (q, k) in enumerate(zip(orders, kernel_size)):
        if q < 0 or q >= k:
            raise ValueError(
                f"order must be in [0, K - 1] on each axis; got {order} for a kernel of size "
                f"{tuple(kernel_size)} ({'height' if axis == 0 else 'width'} K = {k}); pass one order per axis"
            )
    return orders


def _check_vector(t, name: str, channels: int, like: torch.Tensor) -> None:
    if t is None:
        return
    check_tensor(t, name)
    if t.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},), got {tuple(t.shape)}")
    if t.dtype != like.dtype:
        raise TypeError(f"{name} must have dtype {like.dtype}, got {t.dtype}")


def diff_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    keep_img_grad_at_invalid: bool = True,
    edge_weight: torch.Tensor | None = None,
    order: int | tuple[int, int] | None = None,
    edge_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """DiffConv2d: a 'same'-size convolution without padding artefacts.

    Every output whose ``kH x kW`` window (on the dilated grid) lies inside the
    image is an ordinary convolution output. Every other ("boundary") output
    applies the kernel to the polynomial of degree ``order`` (per axis; default
    ``K - 1``) through the nearest samples: this is DiffConv2d's transformed
    kernel ``L_r @ k @ L_s^T`` applied to the nearest fully valid window, and
    equals padding the input by Lagrange extrapolation (see
    :func:`learnable_ops.pad`, mode ``polynomial``) followed by a valid
    convolution. With dilation ``d`` each residue class modulo ``d`` is
    extrapolated on its own grid (the samples the dilated kernel combines).

    High degrees amplify noise: the absolute extrapolation weights sum to 7,
    129 and 2815 for K = 3, 5, 7, so corner outputs on rough data can reach
    ~1e6 at K = 7 and float32 drifts by ~0.1 there. Lower ``order`` to tame
    it; half precision with K >= 5 (order >= 4) warns once.

    Args:
        input: ``(N, C_in, H, W)``, floating point.
        weight: ``(C_out, C_in / groups, kH, kW)``; ``kH`` and ``kW`` odd.
        bias: ``(C_out,)`` or None.
        stride: int or ``(sH, sW)``; the output is ``((H - 1) // sH + 1, (W - 1) // sW + 1)``.
        dilation: int or ``(dH, dW)``.
        groups: as in :func:`torch.nn.functional.conv2d`.
        keep_img_grad_at_invalid: if False, boundary outputs contribute nothing
            to the gradient of ``input`` (they still do to the weights').
        edge_weight: ``(C_out, C_in / groups, kH, kW)`` or None: if given,
            boundary outputs use it instead of ``weight`` (explicit boundary
            handling); interior outputs are unchanged.
        order: extrapolation degree, an int or ``(order_H, order_W)``, each in
            ``[0, K - 1]``; default ``K - 1`` (DiffConv2d).
        edge_bias: ``(C_out,)`` or None: if given, boundary outputs add it
            instead of ``bias``.

    Under autocast, every floating argument is cast to the autocast dtype,
    as :func:`torch.nn.functional.conv2d` is.

    Returns:
        ``(N, C_out, H_out, W_out)``, contiguous.

    Raises:
        ValueError: an even kernel, an image smaller than the (dilated) kernel or
            than ``dilation * (order + 1)`` along an axis, ``order >= K``, or a
            shape mismatch (``edge_weight``, ``bias``, groups).
    """
    check_floating(input, "input")
    dtype = autocast_dtype(input.device.type)
    if dtype is not None:
        # Like F.conv2d under autocast: every floating argument in the autocast dtype.
        input, weight, bias, edge_weight, edge_bias = (
            t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
            for t in (input, weight, bias, edge_weight, edge_bias)
        )
    check_rank(input, "input", (4,), "a 4D tensor (N, C_in, H, W)")
    check_tensor(weight, "weight")
    check_rank(weight, "weight", (4,), "a 4D tensor (C_out, C_in / groups, kH, kW)")
    if weight.dtype != input.dtype:
        raise TypeError(f"weight must have the dtype of input ({input.dtype}), got {weight.dtype}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    c_out, c_in_per_group, kh, kw = weight.shape
    if input.shape[1] != c_in_per_group * groups or c_out % groups != 0:
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} with groups={groups} does not fit input with "
            f"{input.shape[1]} channels (need C_in = weight.shape[1] * groups and C_out divisible by groups)"
        )
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(
            f"kernel size must be odd along both axes (the kernel is centred on its output), got {kh}x{kw}"
        )
    strides = _pair(stride, "stride", 1)
    dilations = _pair(dilation, "dilation", 1)
    orders = resolve_order(order, (kh, kw))
    for axis, name in ((0, "height"), (1, "width")):
        n, k, d, q = input.shape[2 + axis], weight.shape[2 + axis], dilations[axis], orders[axis]
        span, nodes = (k - 1) * d + 1, (q + 1) * d
        if n < span or (k > 1 and n < nodes):
            raise ValueError(
                f"input {name} {n} is smaller than the kernel: {k} taps with dilation {d} span {span}, "
                f"and extrapolating with order {q} needs {nodes} samples"
            )
    if edge_weight is not None:
        check_tensor(edge_weight, "edge_weight")
        if edge_weight.shape != weight.shape:
            raise ValueError(f"edge_weight must have the shape of weight {tuple(weight.shape)}, got {tuple(edge_weight.shape)}")
        if edge_weight.dtype != weight.dtype:
            raise TypeError(f"edge_weight must have dtype {weight.dtype}, got {edge_weight.dtype}")
    _check_vector(bias, "bias", c_out, input)
    _check_vector(edge_bias, "edge_bias", c_out, input)
    check_same_device(("input", input), ("weight", weight), ("bias", bias), ("edge_weight", edge_weight), ("edge_bias", edge_bias))
    if input.dtype in (torch.float16, torch.bfloat16) and max(orders) >= 4:
        _warn_half_precision(input.dtype, orders)
    if (
        strides == (1, 1)
        and edge_weight is None
        and edge_bias is None
        and keep_img_grad_at_invalid
        and _ring_pays(input, weight, groups)
    ):
        # Ring path: F.conv2d's own zero-padded convolution plus the boundary
        # correction of two thin strips (cpp/diffconv.cpp).
        save_strips = (
            torch.is_grad_enabled() and weight.requires_grad and _saves_ring_strips(input.shape, weight.shape, dilations)
        )
        args = (input, weight, bias, list(dilations), groups, list(orders), save_strips)
        if wants_direct_autograd(input, weight, bias):
            # Eager training: the registered autograd entered directly (ops/_direct_autograd.py).
            return _RingDirect.apply(*args)[0]
        return torch.ops.learnable_ops.diff_conv2d_ring.default(*args)[0]
    return torch.ops.learnable_ops.diff_conv2d.default(
        input, weight, bias, edge_weight, edge_bias, list(strides), list(dilations), groups, list(orders),
        bool(keep_img_grad_at_invalid),
    )


# LEARNABLE_OPS_DIFFCONV_RING, read once at import (a tuning switch for benchmarks): "1" takes
# the ring path wherever it applies, "0" never; unset, _ring_pays decides.
_RING_SWITCH = os.environ.get("LEARNABLE_OPS_DIFFCONV_RING")


def _ring_pays(input: torch.Tensor, weight: torch.Tensor, groups: int) -> bool:
    """Whether the ring path is the faster one here (measured, docs/diffconv.md): on the CPU
    always; on CUDA never. On an H100 (16x64x128x128 fp32, fwd+bwd, 2026-12-07 session 6, run 2)
    the ring path launches 54-80 kernels a step and ran depthwise K=3/5/7 in 1.24/1.17/1.35 ms
    and dense K=3 in 1.9 ms, against 0.93/1.12/1.26 ms and 1.26 ms for the padded path (13-21
    kernels; its depthwise layers run on our depthwise ops, its dense ones on cuDNN with
    channels_last tensors)."""
    if _RING_SWITCH in ("0", "1"):
        return _RING_SWITCH == "1"
    return input.device.type != "cuda"


def _ring_strip_sizes(input_shape, weight_shape, dilation) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """Shapes of the ring path's rows strip ``(N, C, 4 ph, W + 2 pw)`` and cols strip, held
    transposed, ``(N, C, 4 pw, H)``; None along an axis without a ring (kernel size 1)."""
    n, c, h, w = input_shape
    pad_h, pad_w = (weight_shape[2] // 2) * dilation[0], (weight_shape[3] // 2) * dilation[1]
    rows = (n, c, 4 * pad_h, w + 2 * pad_w) if pad_h > 0 else None
    cols = (n, c, 4 * pad_w, h) if pad_w > 0 else None
    return rows, cols


def _saves_ring_strips(input_shape, weight_shape, dilation) -> bool:
    """Whether the ring path keeps its strips for the weight gradient rather than rebuilding
    them in the backward pass: when together they hold at most 1/8 of the input's values
    (K = 3 at 128 x 128, K = 5 from about 136 x 136), so that they add little to peak memory."""
    _, _, h, w = input_shape
    strip_values = sum(s[2] * s[3] for s in _ring_strip_sizes(input_shape, weight_shape, dilation) if s is not None)
    return 8 * strip_values <= h * w


def _warn_half_precision(dtype, orders) -> None:
    global _warned_half_precision
    if _warned_half_precision:
        return
    _warned_half_precision = True
    warnings.warn(
        f"diff_conv2d in {dtype} with extrapolation order {max(orders)} (kernel size >= 5): the "
        "extrapolation weights sum to 129 (K=5) and 2815 (K=7) in absolute value, so boundary outputs lose "
        "most of their precision; use float32, or lower `order`",
        RuntimeWarning,
        stacklevel=3,
    )


def _out_size(n: int, stride: int) -> int:
    return (n - 1) // stride + 1


@torch.library.register_fake("learnable_ops::diff_conv2d")
def _diff_conv2d_fake(input, weight, bias, edge_weight, edge_bias, stride, dilation, groups, order, keep):
    return input.new_empty(
        (input.shape[0], weight.shape[0], _out_size(input.shape[2], stride[0]), _out_size(input.shape[3], stride[1]))
    )


@torch.library.register_fake("learnable_ops::diff_conv2d_backward")
def _diff_conv2d_backward_fake(grad_output, input, weight, edge_weight, has_edge_bias, stride, dilation, groups, order, keep, output_mask):
    channels = weight.shape[0]
    return (
        input.new_empty(input.shape) if output_mask[0] else None,
        weight.new_empty(weight.shape) if output_mask[1] else None,
        weight.new_empty((channels,)) if output_mask[2] else None,
        weight.new_empty(weight.shape) if output_mask[3] and edge_weight is not None else None,
        weight.new_empty((channels,)) if output_mask[4] and has_edge_bias else None,
    )


def _padded_native_depthwise(input, weight, stride, dilation, groups) -> bool:
    """cpp/diffconv.cpp's padded_uses_native_depthwise: the padded path of a depthwise layer
    (undilated, stride 1 or 2, kernel and plane within our depthwise ops' limits)."""
    c = input.shape[1]
    return (
        groups == c and weight.shape[0] == groups and weight.shape[1] == 1 and tuple(dilation) == (1, 1)
        and weight.shape[2] <= 31 and weight.shape[3] <= 31 and input.shape[2] * input.shape[3] <= 2**25
        and input.device.type in ("cpu", "cuda") and max(stride) <= 2
    )


def _padded_channels_last(input, weight, stride, dilation, groups) -> bool:
    """cpp/diffconv.cpp's padded_uses_channels_last: CUDA layers that run ATen's convolution
    (cuDNN) on channels_last tensors, for kernels of at most 25 taps; the switch
    LEARNABLE_OPS_DIFFCONV_CHANNELS_LAST overrides (0 never, 1 always)."""
    if input.device.type != "cuda" or _padded_native_depthwise(input, weight, stride, dilation, groups):
        return False
    flag = os.environ.get("LEARNABLE_OPS_DIFFCONV_CHANNELS_LAST")
    if flag in ("0", "1"):
        return flag == "1"
    return weight.shape[2] * weight.shape[3] <= 25


def _padded_batch_chunks(input) -> int:
    """cpp/diffconv.cpp's padded_batch_chunks: min(k, N) for LEARNABLE_OPS_DIFFCONV_CHUNKS=k
    (its leading integer, as strtoll reads it), at least 1; 1 when unset."""
    flag = os.environ.get("LEARNABLE_OPS_DIFFCONV_CHUNKS")
    if flag is None:
        return 1
    match = re.match(r"\s*[+-]?\d+", flag)
    k = int(match.group()) if match else 0
    return max(1, min(k, input.shape[0]))


@torch.library.register_fake("learnable_ops::diff_conv2d_padded_backward")
def _diff_conv2d_padded_backward_fake(grad_output, input, weight, stride, dilation, groups, order, output_mask):
    grad_input = None
    if output_mask[0]:
        if _padded_channels_last(input, weight, stride, dilation, groups) or _padded_batch_chunks(input) > 1:
            grad_input = input.new_empty(input.shape)
        else:  # the image part of the padded gradient, a view
            n, c, h, w = input.shape
            pad_h, pad_w = (weight.shape[2] // 2) * dilation[0], (weight.shape[3] // 2) * dilation[1]
            padded = input.new_empty((n, c, h + 2 * pad_h, w + 2 * pad_w))
            grad_input = padded[:, :, pad_h : pad_h + h, pad_w : pad_w + w]
    return (
        grad_input,
        weight.new_empty(weight.shape) if output_mask[1] else None,
        weight.new_empty((weight.shape[0],)) if output_mask[2] else None,
    )


@torch.library.register_fake("learnable_ops::diff_conv2d_pad_layout")
def _diff_conv2d_pad_layout_fake(input, padding, order, dilation, adjoint, channels_last):
    sign = -2 if adjoint else 2
    shape = (input.shape[0], input.shape[1], input.shape[2] + sign * padding[0], input.shape[3] + sign * padding[1])
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return torch.empty(shape, dtype=input.dtype, device=input.device, memory_format=fmt)


@torch.library.register_fake("learnable_ops::diff_conv2d_ring")
def _diff_conv2d_ring_fake(input, weight, bias, dilation, groups, order, save_strips, native_depthwise=None):
    out = input.new_empty((input.shape[0], weight.shape[0], input.shape[2], input.shape[3]))
    strips = _ring_strip_sizes(input.shape, weight.shape, dilation)
    rows, cols = (input.new_empty(s if save_strips and s is not None else (0,)) for s in strips)
    return out, rows, cols


@torch.library.register_fake("learnable_ops::diff_conv2d_ring_backward")
def _diff_conv2d_ring_backward_fake(
    grad_output, input, weight, rows_strip, cols_strip, dilation, groups, order, output_mask, native_depthwise=None
):
    return (
        input.new_empty(input.shape) if output_mask[0] else None,
        weight.new_empty(weight.shape) if output_mask[1] else None,
        weight.new_empty((weight.shape[0],)) if output_mask[2] else None,
    )


def _ring_setup_context(ctx, inputs, output):
    # native_depthwise, the ops' internal switch between our depthwise ops and ATen's
    # convolutions (cpp/diffconv.cpp), is absent from the wrapper's direct-autograd call.
    input, weight, bias, dilation, groups, order, save_strips, *native_depthwise = inputs
    _, rows_strip, cols_strip = output
    ctx.mark_non_differentiable(rows_strip, cols_strip)
    if save_strips:
        ctx.save_for_backward(input, weight, rows_strip, cols_strip)
    else:
        ctx.save_for_backward(input, weight, None, None)
    ctx.args = (dilation, groups, order)
    ctx.native_depthwise = native_depthwise[0] if native_depthwise else None


def _ring_backward(ctx, grad_output, grad_rows_strip, grad_cols_strip):
    input, weight, rows_strip, cols_strip = ctx.saved_tensors
    need = ctx.needs_input_grad
    grad_input, grad_weight, grad_bias = torch.ops.learnable_ops.diff_conv2d_ring_backward.default(
        grad_output, input, weight, rows_strip, cols_strip, *ctx.args, [need[0], need[1], need[2]], ctx.native_depthwise
    )
    return (grad_input, grad_weight, grad_bias, None, None, None, None, None)[: len(need)]  # 7 or 8 inputs


def _setup_context(ctx, inputs, output):
    input, weight, bias, edge_weight, edge_bias, stride, dilation, groups, order, keep = inputs
    ctx.save_for_backward(input, weight, edge_weight)
    ctx.has_edge_bias = edge_bias is not None
    ctx.args = (stride, dilation, groups, order, keep)


def _backward(ctx, grad_output):
    input, weight, edge_weight = ctx.saved_tensors
    need = ctx.needs_input_grad
    stride, dilation, groups, order, keep = ctx.args
    if edge_weight is None and not ctx.has_edge_bias and keep:
        grad_input, grad_weight, grad_bias = torch.ops.learnable_ops.diff_conv2d_padded_backward.default(
            grad_output, input, weight, stride, dilation, groups, order, [need[0], need[1], need[2]]
        )
        return grad_input, grad_weight, grad_bias, None, None, None, None, None, None, None
    mask = [need[0], need[1], need[2], need[3], need[4]]
    grads = torch.ops.learnable_ops.diff_conv2d_backward.default(
        grad_output, input, weight, edge_weight, ctx.has_edge_bias, *ctx.args, mask
    )
    return (*grads, None, None, None, None, None)


def _backward_setup_context(ctx, inputs, output):
    pass


def _double_backward(ctx, *grads):
    raise NotImplementedError(
        "diff_conv2d does not support double backward (create_graph=True through its backward)"
    )


# Forward mode: both convolutions are linear in the input and affine in the weights and biases
# together. With keep_img_grad_at_invalid=False the input's gradient leaves the boundary outputs
# out, and so does its tangent (a zero boundary kernel): forward and reverse mode give the same
# derivative.
def _jvp(inputs, tangents):
    input, weight, bias, edge_weight, edge_bias, *args = inputs
    t_input, t_weight, t_bias, t_edge_weight, t_edge_bias = tangents[:5]
    keep_img_grad_at_invalid = args[-1]
    op = torch.ops.learnable_ops.diff_conv2d.default
    through_input = through_weights = None
    if t_input is not None:
        boundary_weight = edge_weight if keep_img_grad_at_invalid else torch.zeros_like(weight)
        through_input = op(t_input, weight, None, boundary_weight, None, *args)
    if any(t is not None for t in (t_weight, t_bias, t_edge_weight, t_edge_bias)):
        if edge_weight is not None and t_edge_weight is None:
            t_edge_weight = torch.zeros_like(edge_weight)
        if edge_bias is not None and t_edge_bias is None:
            t_edge_bias = torch.zeros_like(edge_bias)
        t_weight = torch.zeros_like(weight) if t_weight is None else t_weight
        through_weights = op(input, t_weight, t_bias, t_edge_weight, t_edge_bias, *args)
    return add_tangents(through_input, through_weights)


def _ring_jvp(inputs, tangents):
    input, weight, bias, dilation, groups, order, save_strips, native_depthwise = inputs
    ring = torch.ops.learnable_ops.diff_conv2d_ring.default

    def conv(x, w, b):
        return ring(x, w, b, dilation, groups, order, False, native_depthwise)[0]

    return convolution_tangent(conv, input, weight, *tangents[:3]), None, None


def _pad_layout_setup_context(ctx, inputs, output):
    _, ctx.padding, ctx.order, ctx.dilation, ctx.adjoint, _ = inputs


def _pad_layout_backward(ctx, grad_output):
    # The op is the polynomial pad, or with adjoint its adjoint (the fold), in a memory format;
    # the gradient of each is the other one.
    grad = torch.ops.learnable_ops.diff_conv2d_pad_layout.default(
        grad_output, ctx.padding, ctx.order, ctx.dilation, not ctx.adjoint, False
    )
    return grad, None, None, None, None, None


def _pad_layout_jvp(inputs, tangents):
    return torch.ops.learnable_ops.diff_conv2d_pad_layout.default(tangents[0], *inputs[1:])


# The backward ops have no double backward and no forward-mode rule: both raise.
register_autograd("learnable_ops::diff_conv2d", _backward, setup_context=_setup_context, jvp=_jvp)
register_autograd("learnable_ops::diff_conv2d_backward", _double_backward, setup_context=_backward_setup_context)
register_autograd("learnable_ops::diff_conv2d_padded_backward", _double_backward, setup_context=_backward_setup_context)
register_autograd("learnable_ops::diff_conv2d_ring", _ring_backward, setup_context=_ring_setup_context, jvp=_ring_jvp)
register_autograd("learnable_ops::diff_conv2d_ring_backward", _double_backward, setup_context=_backward_setup_context)
# An internal op of the CUDA padded path (called below autograd there); registered so that a
# direct call is differentiable in both modes on every device.
register_autograd(
    "learnable_ops::diff_conv2d_pad_layout",
    _pad_layout_backward,
    setup_context=_pad_layout_setup_context,
    jvp=_pad_layout_jvp,
)

_RingDirect = direct_autograd(torch.ops.learnable_ops.diff_conv2d_ring.default, _ring_setup_context, _ring_backward)
