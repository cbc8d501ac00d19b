"""``learnable_ops.shift``: Sparse Shift and Active Shift of every channel by a learnable offset.

Convention (one for the whole library): a shift ``s`` moves content towards
higher indices, ``out[..., i] = x(i - s)`` along each spatial axis, with ``x``
outside the input given by the padding mode.
"""

from __future__ import annotations

import torch

from learnable_ops.ops._direct_autograd import (
    add_tangents,
    direct_autograd,
    register_autograd,
    skips_autograd,
    wants_direct_autograd,
)
from learnable_ops.ops._validate import check_floating, check_rank, check_same_device, check_tensor, choice
from learnable_ops.ops.pad import normalize_pad_mode

SHIFT_MODES = ("sparse", "active")
"""``sparse``: rounded shift, integer gather (SSL); ``active``: interpolated shift (ASL)."""


def normalize_shift_mode(mode: str) -> str:
    """The canonical name of a shift mode; raises ``ValueError`` listing the valid ones."""
    return choice(mode, "mode", SHIFT_MODES)


def check_shift_args(input: torch.Tensor, shifts: torch.Tensor, input_name: str = "input") -> None:
    """Shape checks shared by the functional API and the fake kernels (raise ``ValueError``)."""
    check_rank(input, input_name, (3, 4, 5), "a 3D, 4D or 5D tensor (N, C, *spatial)")
    ndim = input.dim() - 2
    if shifts.dim() != 2 or shifts.shape[0] != input.shape[1] or shifts.shape[1] != ndim:
        raise ValueError(
            f"shifts must have shape (C, ndim) = ({input.shape[1]}, {ndim}) for {input_name} of shape "
            f"{tuple(input.shape)}, got {tuple(shifts.shape)}"
        )


def shift(
    input: torch.Tensor, shifts: torch.Tensor, padding_mode: str = "zeros", mode: str = "sparse"
) -> torch.Tensor:
    """Shifts every channel of ``input`` by its own offset along each spatial axis.

    ``out[n, c, i] = x[n, c](i - shifts[c])`` per axis, where ``x`` outside the
    input is given by ``padding_mode`` (exactly :func:`numpy.pad`'s modes, for
    any offset, 1e9 included).

    * ``mode='sparse'`` (Sparse Shift Layer): the forward rounds each shift
      half to even (as :func:`torch.round`) and gathers; the input gradient is
      the exact adjoint of that gather; the shift gradient is the derivative of
      the linear/bilinear/trilinear interpolation at the real-valued shift.
    * ``mode='active'`` (Active Shift Layer): linear, bilinear or trilinear
      interpolation at ``i - s``, continuous in ``s``; both gradients are exact
      (at an integer shift, the one-sided derivative from above).

    A channel whose shift is NaN or infinite gives NaN in its output and
    gradients (never an out-of-bounds read).

    Args:
        input: ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)``, floating
            point (float16, bfloat16, float32, float64), or a per-tensor
            quantized ``quint8``/``qint8`` tensor on the CPU (sparse mode only).
        shifts: ``(C, ndim)`` floating point, ``ndim = input.dim() - 2``;
            column ``k`` shifts spatial axis ``k`` (e.g. ``(H, W)`` in 2D). It
            may have another floating dtype than ``input``; its gradient has
            its dtype.
        padding_mode: ``zeros``, ``border``, ``periodic``, ``reflect`` or
            ``symmetric`` (aliases ``replicate``, ``circular`` accepted).
        mode: ``sparse`` or ``active``.

    Returns:
        A tensor of ``input``'s shape and dtype (contiguous).
    """
    check_tensor(input, "input")
    if not input.is_quantized:
        check_floating(input, "input")
    check_floating(shifts, "shifts")
    check_same_device(("input", input), ("shifts", shifts))
    check_shift_args(input, shifts)
    padding_mode = normalize_pad_mode(padding_mode, "padding_mode")
    mode = normalize_shift_mode(mode)
    op = torch.ops.learnable_ops.shift.default
    if not input.is_quantized and wants_direct_autograd(input, shifts):
        return _ShiftDirect.apply(input, shifts, padding_mode, mode)
    if not skips_autograd(input, shifts):
        return op(input, shifts, padding_mode, mode)
    # Eager without a graph to record or a tangent to carry: below the Autograd
    # key, as the direct path does, skipping the registered Python autograd
    # kernel (about half of a call's host time).
    with torch._C._AutoDispatchBelowAutograd():
        return op(input, shifts, padding_mode, mode)


@torch.library.register_fake("learnable_ops::shift")
def _shift_fake(input, shifts, padding_mode="zeros", mode="sparse"):
    check_shift_args(input, shifts)
    return torch.empty_like(input, memory_format=torch.contiguous_format)


@torch.library.register_fake("learnable_ops::shift_input_backward")
def _shift_input_backward_fake(grad_output, shifts, padding_mode, mode):
    check_shift_args(grad_output, shifts, "grad_output")
    return torch.empty_like(grad_output, memory_format=torch.contiguous_format)


@torch.library.register_fake("learnable_ops::shift_shifts_backward")
def _shift_shifts_backward_fake(grad_output, input, shifts, padding_mode):
    check_shift_args(input, shifts)
    return torch.empty_like(shifts, memory_format=torch.contiguous_format)


@torch.library.register_fake("learnable_ops::shift_backward")
def _shift_backward_fake(grad_output, input, shifts, padding_mode, mode):
    check_shift_args(input, shifts)
    if grad_output.shape != input.shape:
        raise ValueError(f"grad_output must have the shape of input {tuple(input.shape)}, got {tuple(grad_output.shape)}")
    return (
        torch.empty_like(grad_output, memory_format=torch.contiguous_format),
        torch.empty_like(shifts, memory_format=torch.contiguous_format),
    )


def _shift_setup_context(ctx, inputs, output):
    input, shifts, padding_mode, mode = inputs
    ctx.save_for_backward(input, shifts)
    ctx.padding_mode = padding_mode
    ctx.mode = mode


def _shift_backward(ctx, grad_output):
    input, shifts = ctx.saved_tensors
    grad_input = grad_shifts = None
    if (
        ctx.needs_input_grad[0]
        and ctx.needs_input_grad[1]
        and not torch.is_grad_enabled()
    ):
        # Both gradients, no graph to record (create_graph=False): one fused op
        # that reads grad_output once, on every device. On CUDA the op picks its
        # kernel (cuda/shift.cu, shift_backward_cuda): the plane kernel for 1D/2D
        # planes that fit in shared memory, the staged kernel for other small
        # float16/bfloat16 planes, the two separate kernels otherwise (the staged
        # kernel ran 8-29% slower than they did in float32 on an H100). With
        # create_graph the separate ops keep their own (double-backward) autograd.
        grad_input, grad_shifts = torch.ops.learnable_ops.shift_backward.default(
            grad_output, input, shifts, ctx.padding_mode, ctx.mode
        )
        return grad_input, grad_shifts, None, None
    if ctx.needs_input_grad[0]:
        grad_input = torch.ops.learnable_ops.shift_input_backward.default(
            grad_output, shifts, ctx.padding_mode, ctx.mode
        )
    if ctx.needs_input_grad[1]:
        grad_shifts = torch.ops.learnable_ops.shift_shifts_backward.default(
            grad_output, input, shifts, ctx.padding_mode
        )
    return grad_input, grad_shifts, None, None


def _shift_input_backward_setup_context(ctx, inputs, output):
    grad_output, shifts, padding_mode, mode = inputs
    ctx.save_for_backward(grad_output, shifts)
    ctx.padding_mode = padding_mode
    ctx.mode = mode


def _input_backward_vjp(grad_output, shifts, padding_mode, mode, grad_grad_input, needs):
    # shift_input_backward(g) = A(s)^T g. It is linear in g with adjoint A(s),
    # and <A(s)^T g, v> = <g, A(s) v>, so its shift derivative is the shift
    # gradient of the forward applied to v.
    gg = gs = None
    if needs[0]:
        gg = torch.ops.learnable_ops.shift.default(grad_grad_input, shifts, padding_mode, mode)
    if needs[1]:
        gs = torch.ops.learnable_ops.shift_shifts_backward.default(grad_output, grad_grad_input, shifts, padding_mode)
    return gg, gs


def _shift_input_backward_backward(ctx, grad_grad_input):
    grad_output, shifts = ctx.saved_tensors
    gg, gs = _input_backward_vjp(
        grad_output, shifts, ctx.padding_mode, ctx.mode, grad_grad_input, ctx.needs_input_grad[:2]
    )
    return gg, gs, None, None


def _with_column(shifts: torch.Tensor, axis: int, values: torch.Tensor) -> torch.Tensor:
    out = shifts.clone()
    out[:, axis] = values
    return out


def _shift_shifts_backward_setup_context(ctx, inputs, output):
    grad_output, input, shifts, padding_mode = inputs
    ctx.save_for_backward(grad_output, input, shifts)
    ctx.padding_mode = padding_mode


# Derivatives in the shifts. Interpolation is linear in s_a within a cell, so the derivative of
# the active shift A(s) along axis a is D_a(s) = A(s | s_a = floor + 1) - A(s | s_a = floor): a
# difference of two active shifts with an integer column a (the one-sided derivative from above
# at an integer, and in sparse mode the documented interpolation derivative). Each helper
# contracts that derivative with per-channel weights u (C, ndim): a direction of the shifts in
# forward mode, a cotangent of the shift gradient in reverse mode.
def _cell_edges(shifts: torch.Tensor):
    """For each axis a, the shifts with column a at the top and at the bottom of its cell. The other
    columns stay differentiable: a derivative of these rules in the shifts (a second derivative
    taken by forward mode, ``jacfwd`` of ``jacfwd`` or of ``jacrev``) has the mixed terms
    d2/ds_a ds_b from them; column a is piecewise constant."""
    s = shifts.double()
    lower = torch.floor(s.detach())
    for a in range(s.shape[1]):
        yield a, _with_column(s, a, lower[:, a] + 1), _with_column(s, a, lower[:, a])


def _channel_weights(u: torch.Tensor, axis: int, like: torch.Tensor) -> torch.Tensor:
    return u[:, axis].to(like.dtype).view((1, -1) + (1,) * (like.dim() - 2))


def _shifts_derivative(input, shifts, u, padding_mode):
    """sum_a u_a D_a(s) x: the derivative of shift(x, s) in the direction u."""
    shift = torch.ops.learnable_ops.shift.default
    return add_tangents(
        *(
            _channel_weights(u, a, input) * (shift(input, hi, padding_mode, "active") - shift(input, lo, padding_mode, "active"))
            for a, hi, lo in _cell_edges(shifts)
        )
    )


def _shifts_derivative_adjoint(grad_output, shifts, u, padding_mode):
    """sum_a D_a(s)^T (u_a g): the derivative of shift_input_backward(g, s) in the direction u."""
    input_backward = torch.ops.learnable_ops.shift_input_backward.default
    terms = []
    for a, hi, lo in _cell_edges(shifts):
        ug = _channel_weights(u, a, grad_output) * grad_output
        terms.append(input_backward(ug, hi, padding_mode, "active") - input_backward(ug, lo, padding_mode, "active"))
    return add_tangents(*terms)


def _shift_gradient_derivative(grad_output, input, shifts, u, padding_mode):
    """The derivative of G = shift_shifts_backward(g, x, s), G[c, b] = <g_c, D_b x_c>, in the
    direction u: dG_b/ds_a = G_b(s | s_a = floor + 1) - G_b(s | s_a = floor) for b != a, 0 for
    b == a. The matrix is symmetric (a Hessian), so this is also the adjoint applied to u."""
    shifts_backward = torch.ops.learnable_ops.shift_shifts_backward.default
    terms = []
    for a, hi, lo in _cell_edges(shifts):
        diff = shifts_backward(grad_output, input, hi, padding_mode) - shifts_backward(grad_output, input, lo, padding_mode)
        diff[:, a] = 0
        terms.append(u[:, a : a + 1].to(diff.dtype) * diff)
    return add_tangents(*terms).to(shifts.dtype)


def _shifts_backward_vjp(grad_output, input, shifts, padding_mode, grad_grad_shifts, needs):
    # G[c, a] = <g_c, D_a(s) x_c>: dG/dg = sum_a u_a D_a x, dG/dx = sum_a D_a^T (u_a g), and the
    # shift derivative as above.
    gg = gx = gs = None
    if needs[0]:
        gg = _shifts_derivative(input, shifts, grad_grad_shifts, padding_mode)
    if needs[1]:
        gx = _shifts_derivative_adjoint(grad_output, shifts, grad_grad_shifts, padding_mode)
    if needs[2]:
        gs = _shift_gradient_derivative(grad_output, input, shifts, grad_grad_shifts, padding_mode)
    return gg, gx, gs


def _shift_shifts_backward_backward(ctx, grad_grad_shifts):
    grad_output, input, shifts = ctx.saved_tensors
    gg, gx, gs = _shifts_backward_vjp(
        grad_output, input, shifts, ctx.padding_mode, grad_grad_shifts, ctx.needs_input_grad[:3]
    )
    return gg, gx, gs, None


def _shift_backward_setup_context(ctx, inputs, output):
    grad_output, input, shifts, padding_mode, mode = inputs
    ctx.save_for_backward(grad_output, input, shifts)
    ctx.padding_mode = padding_mode
    ctx.mode = mode


def _shift_backward_backward(ctx, grad_grad_input, grad_grad_shifts):
    # shift_backward = (shift_input_backward, shift_shifts_backward): the sum of their VJPs.
    grad_output, input, shifts = ctx.saved_tensors
    go_needed, x_needed, s_needed = ctx.needs_input_grad[:3]
    gg = gx = gs = None
    if grad_grad_input is not None:
        gg, gs = _input_backward_vjp(grad_output, shifts, ctx.padding_mode, ctx.mode, grad_grad_input, (go_needed, s_needed))
    if grad_grad_shifts is not None:
        gg2, gx, gs2 = _shifts_backward_vjp(
            grad_output, input, shifts, ctx.padding_mode, grad_grad_shifts, (go_needed, x_needed, s_needed)
        )
        gg, gs = add_tangents(gg, gg2), add_tangents(gs, gs2)
    return gg, gx, gs, None, None


# Forward mode: every op is linear in its tensors other than the shifts; the shift tangents go
# through the derivatives above.
def _shift_jvp(inputs, tangents):
    input, shifts, padding_mode, mode = inputs
    t_input, t_shifts = tangents[:2]
    return add_tangents(
        None if t_input is None else torch.ops.learnable_ops.shift.default(t_input, shifts, padding_mode, mode),
        None if t_shifts is None else _shifts_derivative(input, shifts, t_shifts, padding_mode),
    )


def _shift_input_backward_jvp(inputs, tangents):
    grad_output, shifts, padding_mode, mode = inputs
    t_grad_output, t_shifts = tangents[:2]
    return add_tangents(
        None
        if t_grad_output is None
        else torch.ops.learnable_ops.shift_input_backward.default(t_grad_output, shifts, padding_mode, mode),
        None if t_shifts is None else _shifts_derivative_adjoint(grad_output, shifts, t_shifts, padding_mode),
    )


def _shift_shifts_backward_jvp(inputs, tangents):
    grad_output, input, shifts, padding_mode = inputs
    t_grad_output, t_input, t_shifts = tangents[:3]
    shifts_backward = torch.ops.learnable_ops.shift_shifts_backward.default
    return add_tangents(
        None if t_grad_output is None else shifts_backward(t_grad_output, input, shifts, padding_mode),
        None if t_input is None else shifts_backward(grad_output, t_input, shifts, padding_mode),
        None if t_shifts is None else _shift_gradient_derivative(grad_output, input, shifts, t_shifts, padding_mode),
    )


def _shift_backward_jvp(inputs, tangents):
    # shift_backward = (shift_input_backward, shift_shifts_backward).
    grad_output, input, shifts, padding_mode, mode = inputs
    t_grad_output, t_input, t_shifts = tangents[:3]
    return (
        _shift_input_backward_jvp((grad_output, shifts, padding_mode, mode), (t_grad_output, t_shifts)),
        _shift_shifts_backward_jvp((grad_output, input, shifts, padding_mode), (t_grad_output, t_input, t_shifts)),
    )


register_autograd("learnable_ops::shift", _shift_backward, setup_context=_shift_setup_context, jvp=_shift_jvp)
_ShiftDirect = direct_autograd(torch.ops.learnable_ops.shift.default, _shift_setup_context, _shift_backward)
register_autograd(
    "learnable_ops::shift_input_backward",
    _shift_input_backward_backward,
    setup_context=_shift_input_backward_setup_context,
    jvp=_shift_input_backward_jvp,
)
register_autograd(
    "learnable_ops::shift_shifts_backward",
    _shift_shifts_backward_backward,
    setup_context=_shift_shifts_backward_setup_context,
    jvp=_shift_shifts_backward_jvp,
)
register_autograd(
    "learnable_ops::shift_backward",
    _shift_backward_backward,
    setup_context=_shift_backward_setup_context,
    jvp=_shift_backward_jvp,
)
