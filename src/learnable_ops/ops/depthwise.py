"""``learnable_ops.depthwise_conv2d``: a native depthwise convolution for any kernel size.

It is the dense fast path of DCLS in depthwise layers: a 17x17 depthwise conv
built by ``dcls_construct`` runs here instead of ATen's or cuDNN's depthwise
kernels, which slow down sharply beyond 7x7.
"""

from __future__ import annotations

import torch

from learnable_ops.ops._direct_autograd import (
    add_tangents,
    convolution_tangent,
    direct_autograd,
    register_autograd,
    wants_direct_autograd,
)
from learnable_ops.ops._validate import (
    check_floating,
    check_rank,
    check_same_device,
    int_tuple,
    strictly_channels_last,
)


def same_padding(kernel_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``padding='same'`` for stride 1, as PyTorch defines it: ``k - 1`` cells in
    total per axis, the odd one (for even ``k``) on the bottom/right.

    Returns:
        ``(top, bottom, left, right)``.
    """
    kh, kw = kernel_size
    return ((kh - 1) // 2, kh - 1 - (kh - 1) // 2, (kw - 1) // 2, kw - 1 - (kw - 1) // 2)


def _padding4(padding, kernel_size, stride) -> tuple[int, int, int, int]:
    if isinstance(padding, str):
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' needs stride 1 (as in torch.nn.functional.conv2d), got stride {stride}")
            return same_padding(kernel_size)
        if padding == "valid":
            return (0, 0, 0, 0)
        raise ValueError(f"unknown padding {padding!r}; valid values are 'same', 'valid', an int or a tuple of ints")
    pad = int_tuple(padding, "padding")
    if len(pad) == 1:
        pad = pad * 4
    elif len(pad) == 2:
        pad = (pad[0], pad[0], pad[1], pad[1])
    elif len(pad) != 4:
        raise ValueError(f"padding must be an int, (ph, pw) or (top, bottom, left, right), got {padding!r}")
    if any(p < 0 for p in pad):
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return tuple(pad)


def _stride2(stride) -> tuple[int, int]:
    s = int_tuple(stride, "stride")
    if len(s) == 1:
        s = s * 2
    if len(s) != 2 or any(v < 1 for v in s):
        raise ValueError(f"stride must be a positive int or a pair of positive ints, got {stride!r}")
    return tuple(s)


def _kernel3(weight: torch.Tensor, channels: int) -> torch.Tensor:
    check_floating(weight, "weight")
    if weight.dim() == 4 and weight.shape[1] == 1:
        weight = weight.squeeze(1)
    if weight.dim() != 3 or weight.shape[0] != channels:
        raise ValueError(
            f"weight must have shape (C, 1, kh, kw) or (C, kh, kw) with C = {channels} input channels, "
            f"got {tuple(weight.shape)}"
        )
    return weight


def depthwise_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride=1,
    padding="same",
) -> torch.Tensor:
    """Depthwise 2D convolution (cross-correlation), any kernel size.

    Equals ``F.conv2d(input, weight, bias, stride, padding, groups=C)`` for a
    depthwise ``weight``, with float accumulation for float16/bfloat16.

    Args:
        input: ``(N, C, H, W)``, NCHW or channels_last, floating point.
        weight: ``(C, 1, kh, kw)`` (``nn.Conv2d``'s depthwise weight) or ``(C, kh, kw)``,
            same dtype as ``input``.
        bias: optional ``(C,)``.
        stride: int or ``(sh, sw)``.
        padding: ``'same'`` (stride 1 only; as PyTorch: the extra cell of an even
            kernel goes bottom/right), ``'valid'``, an int, ``(ph, pw)`` or
            ``(top, bottom, left, right)``; zeros.

    Returns:
        ``(N, C, Ho, Wo)`` with ``Ho = (H + top + bottom - kh) // sh + 1`` and likewise for
        ``Wo``: channels_last for a channels_last ``input`` on the CPU (as ``F.conv2d``; the
        kernel is vectorised over channels there), contiguous otherwise (CUDA reads
        channels_last input through an NCHW copy).
    """
    check_floating(input, "input")
    check_rank(input, "input", (4,), "a 4D tensor (N, C, H, W)")
    w = _kernel3(weight, input.shape[1])
    if w.dtype != input.dtype:
        raise TypeError(f"input and weight must have the same dtype, got {input.dtype} and {w.dtype}")
    if bias is not None:
        check_floating(bias, "bias")
        if bias.shape != (input.shape[1],):
            raise ValueError(f"bias must have shape ({input.shape[1]},), got {tuple(bias.shape)}")
        if bias.dtype != input.dtype:
            raise TypeError(f"input and bias must have the same dtype, got {input.dtype} and {bias.dtype}")
    check_same_device(("input", input), ("weight", w), ("bias", bias))
    s = _stride2(stride)
    pad = _padding4(padding, tuple(w.shape[1:]), s)
    kh, kw = w.shape[1:]
    if input.shape[2] + pad[0] + pad[1] < kh or input.shape[3] + pad[2] + pad[3] < kw:
        raise ValueError(
            f"the padded input ({input.shape[2] + pad[0] + pad[1]}x{input.shape[3] + pad[2] + pad[3]}) is smaller "
            f"than the kernel ({kh}x{kw})"
        )
    if wants_direct_autograd(input, w, bias):
        # Eager training: the registered autograd entered directly (ops/_direct_autograd.py).
        return _DepthwiseDirect.apply(input, w, bias, list(s), list(pad))
    return torch.ops.learnable_ops.depthwise_conv2d.default(input, w, bias, list(s), list(pad))


def depthwise_conv1d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding="same",
) -> torch.Tensor:
    """Depthwise 1D convolution, the 2D op with ``H = 1``.

    Args:
        input: ``(N, C, L)``.
        weight: ``(C, 1, k)`` or ``(C, k)``.
        bias: optional ``(C,)``.
        stride: int.
        padding: ``'same'``, ``'valid'``, an int or ``(left, right)``.

    Returns:
        ``(N, C, Lo)``.
    """
    check_floating(input, "input")
    check_rank(input, "input", (3,), "a 3D tensor (N, C, L)")
    check_floating(weight, "weight")
    if weight.dim() == 3 and weight.shape[1] == 1:
        weight = weight.squeeze(1)
    if weight.dim() != 2:
        raise ValueError(f"weight must have shape (C, 1, k) or (C, k), got {tuple(weight.shape)}")
    if isinstance(padding, str):
        pad2d = padding
    else:
        p = int_tuple(padding, "padding")
        p = p * 2 if len(p) == 1 else p
        if len(p) != 2:
            raise ValueError(f"padding must be an int or (left, right), got {padding!r}")
        pad2d = (0, 0, p[0], p[1])
    if isinstance(stride, (tuple, list)):
        stride = int_tuple(stride, "stride", 1)[0]
    out = depthwise_conv2d(input.unsqueeze(2), weight.unsqueeze(1), bias, (1, stride), pad2d)
    return out.squeeze(2)


def _out_size(size, k, s, before, after):
    return (size + before + after - k) // s + 1


def _keeps_channels_last(t: torch.Tensor) -> bool:
    """Whether the CPU kernels take ``t`` as channels_last and give a channels_last result
    (the op's C++ check); CUDA's give NCHW."""
    return t.device.type == "cpu" and strictly_channels_last(t)


def _empty_like_layout(like: torch.Tensor, shape) -> torch.Tensor:
    fmt = torch.channels_last if _keeps_channels_last(like) else torch.contiguous_format
    return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt)


@torch.library.register_fake("learnable_ops::depthwise_conv2d")
def _fake(input, weight, bias, stride, padding):
    n, c, h, w = input.shape
    kh, kw = weight.shape[1:]
    return _empty_like_layout(
        input,
        (n, c, _out_size(h, kh, stride[0], padding[0], padding[1]), _out_size(w, kw, stride[1], padding[2], padding[3])),
    )


@torch.library.register_fake("learnable_ops::depthwise_conv2d_backward_input")
def _fake_backward_input(grad_output, weight, input_size, stride, padding):
    return _empty_like_layout(grad_output, input_size)


@torch.library.register_fake("learnable_ops::depthwise_conv2d_backward_weight")
def _fake_backward_weight(grad_output, input, kernel_size, stride, padding, bias_grad=True):
    # Without bias_grad the bias gradient is not computed: an empty (0,) tensor.
    c = input.shape[1]
    return input.new_empty((c, kernel_size[0], kernel_size[1])), input.new_empty((c if bias_grad else 0,))


def _setup(ctx, inputs, output):
    input, weight, bias, stride, padding = inputs
    ctx.save_for_backward(input, weight)
    ctx.has_bias = bias is not None
    ctx.stride, ctx.padding = stride, padding


def _backward(ctx, grad):
    input, weight = ctx.saved_tensors
    gi = gw = gb = None
    if ctx.needs_input_grad[0]:
        gi = torch.ops.learnable_ops.depthwise_conv2d_backward_input.default(
            grad, weight, list(input.shape), ctx.stride, ctx.padding
        )
    bias_grad = ctx.has_bias and ctx.needs_input_grad[2]
    if ctx.needs_input_grad[1] or bias_grad:
        gw, gb = torch.ops.learnable_ops.depthwise_conv2d_backward_weight.default(
            grad, input, list(weight.shape[1:]), ctx.stride, ctx.padding, bias_grad
        )
        if not bias_grad:
            gb = None
    return gi, gw, gb, None, None


# The backward ops are bilinear; their derivatives are the three ops again,
# which makes double backward (gradgradcheck, Hessian-vector products) work.
def _setup_backward_input(ctx, inputs, output):
    grad_output, weight, input_size, stride, padding = inputs
    ctx.save_for_backward(grad_output, weight)
    ctx.stride, ctx.padding = stride, padding


def _backward_backward_input(ctx, gg):
    grad_output, weight = ctx.saved_tensors
    d_go = d_w = None
    if ctx.needs_input_grad[0]:
        d_go = torch.ops.learnable_ops.depthwise_conv2d.default(gg, weight, None, ctx.stride, ctx.padding)
    if ctx.needs_input_grad[1]:
        d_w, _ = torch.ops.learnable_ops.depthwise_conv2d_backward_weight.default(
            grad_output, gg, list(weight.shape[1:]), ctx.stride, ctx.padding, False
        )
    return d_go, d_w, None, None, None


def _setup_backward_weight(ctx, inputs, output):
    grad_output, input, kernel_size, stride, padding, *bias_grad = inputs
    ctx.save_for_backward(grad_output, input)
    ctx.stride, ctx.padding = stride, padding
    ctx.bias_grad = bias_grad[0] if bias_grad else True


def _backward_backward_weight(ctx, gg_weight, gg_bias):
    grad_output, input = ctx.saved_tensors
    if not ctx.bias_grad:
        gg_bias = None  # the (0,) placeholder result has no gradient to pass on
    d_go = d_in = None
    if ctx.needs_input_grad[0]:
        d_go = torch.ops.learnable_ops.depthwise_conv2d.default(input, gg_weight, gg_bias, ctx.stride, ctx.padding)
    if ctx.needs_input_grad[1]:
        d_in = torch.ops.learnable_ops.depthwise_conv2d_backward_input.default(
            grad_output, gg_weight, list(input.shape), ctx.stride, ctx.padding
        )
    return d_go, d_in, None, None, None, None


# Forward mode: the three ops are bilinear (the forward affine in (weight, bias)), so each
# tangent is a sum of the ops applied to one tangent and the other primal.
def _jvp(inputs, tangents):
    input, weight, bias, stride, padding = inputs

    def conv(x, w, b):
        return torch.ops.learnable_ops.depthwise_conv2d.default(x, w, b, stride, padding)

    return convolution_tangent(conv, input, weight, *tangents[:3])


def _jvp_backward_input(inputs, tangents):
    grad_output, weight, input_size, stride, padding = inputs
    t_grad_output, t_weight = tangents[:2]
    op = torch.ops.learnable_ops.depthwise_conv2d_backward_input.default
    return add_tangents(
        None if t_grad_output is None else op(t_grad_output, weight, input_size, stride, padding),
        None if t_weight is None else op(grad_output, t_weight, input_size, stride, padding),
    )


def _jvp_backward_weight(inputs, tangents):
    grad_output, input, kernel_size, stride, padding, *rest = inputs
    bias_grad = rest[0] if rest else True
    t_grad_output, t_input = tangents[:2]
    op = torch.ops.learnable_ops.depthwise_conv2d_backward_weight.default
    t_weight = t_bias = None
    if t_grad_output is not None:
        t_weight, t_bias = op(t_grad_output, input, kernel_size, stride, padding, bias_grad)
    if t_input is not None:  # the bias gradient does not depend on the input
        t_weight = add_tangents(t_weight, op(grad_output, t_input, kernel_size, stride, padding, False)[0])
    return t_weight, t_bias


register_autograd("learnable_ops::depthwise_conv2d", _backward, setup_context=_setup, jvp=_jvp)
register_autograd(
    "learnable_ops::depthwise_conv2d_backward_input",
    _backward_backward_input,
    setup_context=_setup_backward_input,
    jvp=_jvp_backward_input,
)
register_autograd(
    "learnable_ops::depthwise_conv2d_backward_weight",
    _backward_backward_weight,
    setup_context=_setup_backward_weight,
    jvp=_jvp_backward_weight,
)

_DepthwiseDirect = direct_autograd(torch.ops.learnable_ops.depthwise_conv2d.default, _setup, _backward)
