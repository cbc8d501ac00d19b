"""``learnable_ops.dcls_sparse_depthwise``: DCLS v0/v1 in a depthwise layer, tap by tap.

The dense DCLS kernel of a depthwise layer has ``prod(D)`` cells but only
``Kc * 2^n`` of them are non-zero for the bilinear versions. This op never
builds it: each learnable tap contributes its at most ``2^n`` integer corners
directly, in the forward pass and in the gradients to the input, the weights
and the positions.
"""

from __future__ import annotations

import torch

from learnable_ops.ops._direct_autograd import (
    convolution_tangent,
    direct_autograd,
    register_autograd,
    wants_direct_autograd,
)
from learnable_ops.ops._validate import check_floating, check_same_device, choice, int_tuple

SPARSE_VERSIONS = ("v0", "v1")
"""DCLS versions with a sparse-tap path: the bilinear ones (the triangle kernel touches 2^n cells)."""


def _per_axis(value, name: str, n: int, minimum: int) -> tuple[int, ...]:
    out = int_tuple(value, name)
    if len(out) == 1:
        out = out * n
    if len(out) != n:
        raise ValueError(f"{name} must be an int or {n} ints, got {value!r}")
    if any(v < minimum for v in out):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def dcls_sparse_depthwise(
    input: torch.Tensor,
    weight: torch.Tensor,
    P: torch.Tensor,
    bias: torch.Tensor | None = None,
    dilated_kernel_size=1,
    stride=1,
    padding=0,
    version: str = "v0",
) -> torch.Tensor:
    """Depthwise DCLS convolution (versions v0 and v1) computed tap by tap.

    Equals ``F.conv{1,2}d(input, K, bias, stride, padding, groups=C)`` with the
    dense DCLS kernel ``K = dcls_construct(weight, P, None, dilated_kernel_size,
    version)``: tap ``k`` of channel ``c`` sits at ``P[a, c, 0, k] + D_a // 2``
    along kernel axis ``a``; v0 spreads its weight bilinearly over the (at most
    ``2^n``) surrounding cells, dropping cells off the grid; v1 renormalises
    those in-grid shares to sum to 1 (with ``+1e-7`` in the denominator).
    Cost: ``Kc * 2^n`` taps per output instead of ``prod(D)``.

    Args:
        input: ``(N, C, L)`` or ``(N, C, H, W)`` (n = 1 or 2 spatial dims).
        weight: ``(C, 1, Kc)`` (a depthwise ``Dcls`` layer's weight) or ``(C, Kc)``,
            same dtype as ``input``.
        P: positions, ``(n, C, 1, Kc)``, ``(n, C, Kc)``, or ``(n, 1, 1, Kc)`` shared by
            all channels (broadcast).
        bias: optional ``(C,)``.
        dilated_kernel_size: ``D``, an int or n ints.
        stride: an int or n ints.
        padding: zero padding on both sides, an int or n ints.
        version: ``'v0'`` or ``'v1'``.

    Returns:
        ``(N, C, *out)`` with ``out_a = (S_a + 2 * padding_a - D_a) // stride_a + 1``.
    """
    check_floating(input, "input")
    if input.dim() not in (3, 4):
        raise ValueError(f"input must be (N, C, L) or (N, C, H, W), got a tensor of shape {tuple(input.shape)}")
    n = input.dim() - 2
    C = input.shape[1]
    check_floating(weight, "weight")
    check_floating(P, "P")
    version = choice(version, "version", SPARSE_VERSIONS)
    w = weight.squeeze(1) if weight.dim() == 3 and weight.shape[1] == 1 else weight
    if w.dim() != 2 or w.shape[0] != C:
        raise ValueError(f"weight must have shape ({C}, 1, kernel_count) or ({C}, kernel_count), got {tuple(weight.shape)}")
    if w.dtype != input.dtype:
        raise TypeError(f"input and weight must have the same dtype, got {input.dtype} and {w.dtype}")
    Kc = w.shape[1]
    pos = P.squeeze(2) if P.dim() == 4 and P.shape[2] == 1 else P
    if pos.dim() != 3 or pos.shape[0] != n or pos.shape[1] not in (1, C) or pos.shape[2] != Kc:
        raise ValueError(
            f"P must have shape ({n}, {C}, 1, {Kc}), ({n}, {C}, {Kc}) or ({n}, 1, 1, {Kc}), got {tuple(P.shape)}"
        )
    pos = pos.expand(n, C, Kc)
    if bias is not None:
        check_floating(bias, "bias")
        if bias.shape != (C,):
            raise ValueError(f"bias must have shape ({C},), got {tuple(bias.shape)}")
        if bias.dtype != input.dtype:
            raise TypeError(f"input and bias must have the same dtype, got {input.dtype} and {bias.dtype}")
    check_same_device(("input", input), ("weight", w), ("P", pos), ("bias", bias))
    D = _per_axis(dilated_kernel_size, "dilated_kernel_size", n, 1)
    s = _per_axis(stride, "stride", n, 1)
    p = _per_axis(padding, "padding", n, 0)
    for a in range(n):
        if input.shape[2 + a] + 2 * p[a] < D[a]:
            raise ValueError(
                f"the padded input along axis {a} ({input.shape[2 + a] + 2 * p[a]}) is smaller than "
                f"dilated_kernel_size ({D[a]})"
            )
    if wants_direct_autograd(input, w, pos, bias):
        # Eager training: the registered autograd entered directly (ops/_direct_autograd.py).
        return _SparseDirect.apply(input, w, pos, bias, list(D), list(s), list(p), version)
    return torch.ops.learnable_ops.dcls_sparse_depthwise.default(input, w, pos, bias, list(D), list(s), list(p), version)


@torch.library.register_fake("learnable_ops::dcls_sparse_depthwise")
def _fake(input, weight, P, bias, dilated_kernel_size, stride, padding, version):
    out = [(size + 2 * p - d) // s + 1 for size, d, s, p in zip(input.shape[2:], dilated_kernel_size, stride, padding)]
    return input.new_empty((*input.shape[:2], *out))


@torch.library.register_fake("learnable_ops::dcls_sparse_depthwise_backward")
def _fake_backward(grad_output, input, weight, P, dilated_kernel_size, stride, padding, version, input_grad):
    grad_input = input.new_empty(input.shape if input_grad else (0,))
    return grad_input, torch.empty_like(weight), torch.empty_like(P), input.new_empty((input.shape[1],))


def _setup(ctx, inputs, output):
    input, weight, P, bias, D, stride, padding, version = inputs
    ctx.save_for_backward(input, weight, P)
    ctx.has_bias = bias is not None
    ctx.args = (D, stride, padding, version)


def _backward(ctx, grad):
    input, weight, P = ctx.saved_tensors
    gi, gw, gp, gb = torch.ops.learnable_ops.dcls_sparse_depthwise_backward.default(
        grad, input, weight, P, *ctx.args, ctx.needs_input_grad[0]
    )
    return (
        gi if ctx.needs_input_grad[0] else None,
        gw if ctx.needs_input_grad[1] else None,
        gp if ctx.needs_input_grad[2] else None,
        gb if ctx.has_bias and ctx.needs_input_grad[3] else None,
        None,
        None,
        None,
        None,
    )


def _jvp(inputs, tangents):
    # Linear in the input and affine in (weight, bias); the positions' derivative is the backward
    # op's alone.
    input, weight, P, bias, *args = inputs
    t_input, t_weight, _, t_bias = tangents[:4]

    def conv(x, w, b):
        return torch.ops.learnable_ops.dcls_sparse_depthwise.default(x, w, P, b, *args)

    return convolution_tangent(conv, input, weight, t_input, t_weight, t_bias)


register_autograd(
    "learnable_ops::dcls_sparse_depthwise",
    _backward,
    setup_context=_setup,
    jvp=_jvp,
    tangent_arguments=("input", "weight", "bias"),
)


def _setup_backward(ctx, inputs, output):
    pass


def _backward_backward(ctx, *grads):
    raise NotImplementedError(
        "dcls_sparse_depthwise has no double backward; use method='construct' or 'dense' (dcls_construct + conv) "
        "for higher-order gradients"
    )


register_autograd("learnable_ops::dcls_sparse_depthwise_backward", _backward_backward, setup_context=_setup_backward)

_SparseDirect = direct_autograd(torch.ops.learnable_ops.dcls_sparse_depthwise.default, _setup, _backward)
