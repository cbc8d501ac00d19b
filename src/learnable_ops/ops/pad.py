"""``learnable_ops.pad``: N-d padding in five modes, any amount, with cropping."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from learnable_ops.ops._validate import check_floating, check_rank, choice, int_tuple

PAD_MODES = ("zeros", "border", "periodic", "reflect", "symmetric")
"""Padding modes of the shared index maps (numpy.pad's constant, edge, wrap, reflect, symmetric)."""

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
    return choice(mode, name, PAD_MODES, PAD_MODE_ALIASES)


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


def pad(input: torch.Tensor, pad: Sequence[int], mode: str = "zeros") -> torch.Tensor:
    """Pads (or crops) every spatial dimension of ``input``.

    Unlike :func:`torch.nn.functional.pad`, every mode accepts any amount,
    including pads several times larger than the input, and ``symmetric`` is
    available. Each mode equals :func:`numpy.pad` exactly: ``zeros``
    (numpy "constant"), ``border`` ("edge"), ``periodic`` ("wrap"),
    ``reflect`` and ``symmetric``. Negative amounts crop. The backward pass is
    the exact adjoint (a sum over every output that copied an input element).

    Args:
        input: ``(N, C, W)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``, floating point.
        pad: ``2 * (input.dim() - 2)`` ints in :func:`torch.nn.functional.pad`'s
            order: ``(W_before, W_after, H_before, H_after, D_before, D_after)``.
        mode: one of :data:`PAD_MODES`; the torch/numpy names ``constant``,
            ``replicate``, ``edge``, ``circular`` and ``wrap`` are accepted too.

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
    return torch.ops.learnable_ops.pad.default(input, list(amounts), mode)


@torch.library.register_fake("learnable_ops::pad")
def _pad_fake(input, pad, mode):
    return input.new_empty(pad_output_shape(input.shape, pad))


@torch.library.register_fake("learnable_ops::pad_backward")
def _pad_backward_fake(grad_output, input_size, pad, mode):
    return grad_output.new_empty(input_size)


def _pad_setup_context(ctx, inputs, output):
    input, pad, mode = inputs
    ctx.input_size = list(input.shape)
    ctx.pad = pad
    ctx.mode = mode


def _pad_backward(ctx, grad_output):
    grad = torch.ops.learnable_ops.pad_backward.default(grad_output, ctx.input_size, ctx.pad, ctx.mode)
    return grad, None, None


def _pad_backward_setup_context(ctx, inputs, output):
    _, _, pad, mode = inputs
    ctx.pad = pad
    ctx.mode = mode


def _pad_backward_backward(ctx, grad_grad_input):
    # pad_backward is linear in grad_output and its adjoint is pad itself.
    return torch.ops.learnable_ops.pad.default(grad_grad_input, ctx.pad, ctx.mode), None, None, None


torch.library.register_autograd("learnable_ops::pad", _pad_backward, setup_context=_pad_setup_context)
torch.library.register_autograd(
    "learnable_ops::pad_backward", _pad_backward_backward, setup_context=_pad_backward_setup_context
)
