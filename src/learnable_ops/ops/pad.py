"""``learnable_ops.pad``: N-d padding in five index modes and polynomial extrapolation, any amount, with cropping."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from learnable_ops.ops._direct_autograd import direct_autograd, register_autograd, wants_direct_autograd
from learnable_ops.ops._validate import check_floating, check_rank, choice, int_tuple

PAD_MODES = ("zeros", "border", "periodic", "reflect", "symmetric")
"""Padding modes of the shared index maps (numpy.pad's constant, edge, wrap, reflect, symmetric)."""

EXTRAPOLATION_MODES = ("polynomial",)
"""Padding modes that extrapolate (a weighted sum of samples rather than a copy); they take ``order``."""

PAD_MODE_ALIASES = {
    "constant": "zeros",
    "replicate": "border",
    "edge": "border",
    "circular": "periodic",
    "wrap": "periodic",
}
"""Names from ``torch.nn.functional.pad``, ``nn.Conv2d.padding_mode`` and numpy accepted as well."""


def normalize_pad_mode(mode: str, name: str = "mode") -> str:
    """The canonical name of a padding mode; raises ``ValueError`` listing the valid ones."""
    return choice(mode, name, PAD_MODES + EXTRAPOLATION_MODES, PAD_MODE_ALIASES)


def pad_output_shape(shape: Sequence[int], pad: Sequence[int]) -> list[int]:
    """Output shape of :func:`pad` (F.pad's order: last dimension first)."""
    out = list(shape)
    for k in range(len(pad) // 2):
        dim = len(shape) - 1 - k
        size = shape[dim] + pad[2 * k] + pad[2 * k + 1]
        torch._check(
            size >= 1,
            lambda: f"pad ({pad[2 * k]}, {pad[2 * k + 1]}) on dimension {dim} of size {shape[dim]} "
            "leaves no element; the output must keep at least one",
        )
        out[dim] = size
    return out


def _per_axis(value, name: str, nsp: int, lowest: int) -> list[int] | None:
    if value is None:
        return None
    values = int_tuple(value, name, None)
    if len(values) == 1:
        values = values * nsp
    if len(values) != nsp:
        raise ValueError(f"{name} must be an int or have {nsp} entries (one per spatial dimension), got {len(values)}")
    for v in values:
        if v < lowest:
            raise ValueError(f"{name} must be >= {lowest}, got {value}")
    return list(values)


def pad(
    input: torch.Tensor,
    pad: Sequence[int],
    mode: str = "zeros",
    order: int | Sequence[int] | None = None,
    dilation: int | Sequence[int] | None = None,
) -> torch.Tensor:
    """Pads (or crops) every spatial dimension of ``input``.

    Unlike :func:`torch.nn.functional.pad`, every mode accepts any amount,
    including pads several times larger than the input, and ``symmetric`` is
    available. Each index mode equals :func:`numpy.pad` exactly: ``zeros``
    (numpy "constant"), ``border`` ("edge"), ``periodic`` ("wrap"),
    ``reflect`` and ``symmetric``. Negative amounts crop. The backward pass is
    the exact adjoint (a sum over every output that copied an input element).

    Mode ``polynomial`` extrapolates: along each padded dimension, the value
    ``d`` samples outside an edge is the polynomial of degree ``order``
    through the ``order + 1`` samples nearest to that edge, evaluated there,
    i.e. ``sum_i l_i(-d) * x[edge + i]`` with ``l_i`` the Lagrange basis on
    the nodes ``0..order`` (for ``order=2``, ``d=1``: ``3, -3, 1``). There is
    no natural default degree for a pad on its own, so ``order`` is required
    here; :func:`learnable_ops.diff_conv2d` uses ``order = K - 1`` for a
    ``K``-wide kernel. Dimensions are extended one after the other, so corners
    are tensor products of the two edge rules. With ``dilation`` ``s``, each
    residue class modulo ``s`` is extrapolated on its own grid (the samples a
    convolution of dilation ``s`` combines): nodes are ``s`` apart. A padded
    dimension needs at least ``dilation * (order + 1)`` samples. High orders
    amplify noise (the absolute weights for one sample at distance 1, 2, 3 sum
    to 7 for order 2, 129 for order 4 at ``d=2``, 2815 for order 6 at ``d=3``).
    The backward pass is the exact adjoint (the transpose of these weights).

    Args:
        input: ``(N, C, W)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``, floating point.
        pad: ``2 * (input.dim() - 2)`` ints in :func:`torch.nn.functional.pad`'s
            order: ``(W_before, W_after, H_before, H_after, D_before, D_after)``.
        mode: one of :data:`PAD_MODES` or ``"polynomial"``; the torch/numpy names
            ``constant``, ``replicate``, ``edge``, ``circular`` and ``wrap`` are
            accepted too.
        order: ``polynomial`` mode only (required there): the degree, an int or
            one per spatial dimension in dimension order (``(D,) H, W``).
        dilation: ``polynomial`` mode only: the grid step, an int or one per
            spatial dimension in dimension order; default 1.

    Returns:
        ``(N, C, *[size + before + after])``, contiguous, of ``input``'s dtype.
    """
    check_floating(input, "input")
    check_rank(input, "input", (3, 4, 5), "a 3D, 4D or 5D tensor (N, C, *spatial)")
    amounts = int_tuple(pad, "pad")
    nsp = input.dim() - 2
    if len(amounts) != 2 * nsp:
        raise ValueError(
            f"pad must have {2 * nsp} entries (before/after for each of the {nsp} spatial dimensions, "
            f"last first) for an input of shape {tuple(input.shape)}, got {len(amounts)}"
        )
    mode = normalize_pad_mode(mode)
    for k in range(nsp):
        dim = input.dim() - 1 - k
        if input.shape[dim] + amounts[2 * k] + amounts[2 * k + 1] < 1:
            raise ValueError(
                f"pad ({amounts[2 * k]}, {amounts[2 * k + 1]}) crops dimension {dim} of size "
                f"{input.shape[dim]} to nothing; the output must keep at least one element"
            )
    if mode not in EXTRAPOLATION_MODES:
        if order is not None or dilation is not None:
            raise ValueError(f"order and dilation apply to mode 'polynomial' only, got mode {mode!r}")
        return _pad(input, list(amounts), mode)
    if order is None:
        raise ValueError(
            "order is required for mode 'polynomial': the degree of the extrapolating polynomial, "
            "which passes through the order + 1 samples nearest to each edge"
        )
    orders = _per_axis(order, "order", nsp, 0)
    steps = _per_axis(dilation, "dilation", nsp, 1) or [1] * nsp
    for k in range(nsp):
        dim = 2 + k
        before, after = amounts[2 * (nsp - 1 - k)], amounts[2 * (nsp - 1 - k) + 1]
        need = steps[k] * (orders[k] + 1)
        if (before > 0 or after > 0) and input.shape[dim] < need:
            raise ValueError(
                f"input has size {input.shape[dim]} on dimension {dim}; polynomial padding of order "
                f"{orders[k]} with dilation {steps[k]} needs at least {need} samples there"
            )
    return _pad(input, list(amounts), mode, orders, steps)


def _pad(input, amounts, mode, orders=None, steps=None):
    """The op on checked arguments, with the direct eager autograd when a graph is needed."""
    if wants_direct_autograd(input):
        return _PadDirect.apply(input, amounts, mode, orders, steps)
    return torch.ops.learnable_ops.pad.default(input, amounts, mode, orders, steps)


@torch.library.register_fake("learnable_ops::pad")
def _pad_fake(input, pad, mode, order=None, dilation=None):
    return input.new_empty(pad_output_shape(input.shape, pad))


@torch.library.register_fake("learnable_ops::pad_backward")
def _pad_backward_fake(grad_output, input_size, pad, mode, order=None, dilation=None):
    return grad_output.new_empty(input_size)


def _pad_setup_context(ctx, inputs, output):
    input, pad, mode, order, dilation = inputs
    ctx.input_size = list(input.shape)
    ctx.args = (pad, mode, order, dilation)


def _pad_backward(ctx, grad_output):
    grad = torch.ops.learnable_ops.pad_backward.default(grad_output, ctx.input_size, *ctx.args)
    return grad, None, None, None, None


def _pad_backward_setup_context(ctx, inputs, output):
    ctx.args = tuple(inputs[2:])


def _pad_backward_backward(ctx, grad_grad_input):
    # pad_backward is linear in grad_output and its adjoint is pad itself.
    return torch.ops.learnable_ops.pad.default(grad_grad_input, *ctx.args), None, None, None, None, None


# Both ops are linear in their tensor argument: each one's tangent is the op applied to it.
def _pad_jvp(inputs, tangents):
    return torch.ops.learnable_ops.pad.default(tangents[0], *inputs[1:])


def _pad_backward_jvp(inputs, tangents):
    return torch.ops.learnable_ops.pad_backward.default(tangents[0], *inputs[1:])


register_autograd("learnable_ops::pad", _pad_backward, setup_context=_pad_setup_context, jvp=_pad_jvp)
_PadDirect = direct_autograd(torch.ops.learnable_ops.pad.default, _pad_setup_context, _pad_backward)
register_autograd(
    "learnable_ops::pad_backward",
    _pad_backward_backward,
    setup_context=_pad_backward_setup_context,
    jvp=_pad_backward_jvp,
)
