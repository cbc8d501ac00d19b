"""``learnable_ops.dcls_construct``: the dense DCLS kernel from its taps, natively.

The kernel of a DCLS layer (dilated convolution with learnable spacings) is
``K[o, i, u] = sum_k W[o, i, k] * phi_k(u)`` over the grid ``u`` of
``dilated_kernel_size`` D; see :func:`dcls_construct` for the profiles
``phi_k`` of each version.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from learnable_ops.ops._direct_autograd import (
    backward_below_autograd,
    direct_autograd,
    register_autograd,
    wants_direct_autograd,
)
from learnable_ops.ops._validate import check_floating, check_same_device, choice, int_tuple

DCLS_VERSIONS = ("v0", "v1", "max", "gauss")
"""Interpolation versions of :func:`dcls_construct` (those of DCLS 0.1.x)."""

DCLS_VERSIONS_WITH_SIG = ("max", "gauss")
"""Versions with a learnable width ``SIG``."""

GAUSS_SIGMA_FLOOR = 0.27
"""``gauss`` uses the standard deviation ``|SIG| + 0.27`` (as DCLS 0.1.x)."""

NORM_EPS = 1e-7
"""Added to the normaliser of ``v1``, ``max`` and ``gauss`` (as DCLS 0.1.x)."""


def normalize_dcls_version(version: str) -> str:
    """Checks a version name; raises ``ValueError`` listing the valid ones."""
    return choice(version, "version", DCLS_VERSIONS)


def dcls_construct(
    weight: torch.Tensor,
    P: torch.Tensor,
    SIG: torch.Tensor | None,
    dilated_kernel_size: int | Sequence[int],
    version: str = "gauss",
) -> torch.Tensor:
    """Builds the dense DCLS kernel from tap weights, positions and widths.

    ``K[o, i, u] = sum_k W[o, i, k] * phi_k(u)`` for every cell ``u`` of the
    grid of ``dilated_kernel_size`` D. Tap ``k`` of kernel ``(o, i)`` is centred
    at ``c_a = P[a, o, i, k] + D_a // 2`` along kernel axis ``a``: ``P[a]`` and
    ``SIG[a]`` always drive axis ``a``, in every version and every dimension
    (DCLS 0.1.x transposes them in v1/max/gauss). With ``d_a = u_a - c_a``:

    * ``'v0'``: multilinear interpolation, ``phi = prod_a max(0, 1 - |d_a|)``,
      unnormalised; corners off the grid are dropped.
    * ``'v1'``: the same triangles, normalised to sum 1 over the grid:
      ``phi / (sum_u phi + 1e-7)``.
    * ``'max'``: triangles of half-width ``|SIG_a| + 1``,
      ``prod_a max(0, |SIG_a| + 1 - |d_a|)``, normalised as ``v1``.
    * ``'gauss'``: ``exp(-1/2 sum_a (d_a / (|SIG_a| + 0.27))^2)``, normalised as ``v1``.

    The construction is fused: it writes only the kernel, in memory
    ``O(Co * Ci/g * prod(D))`` plus the parameters (DCLS 0.1.x materialises
    ``prod(D) * n * Co * Ci/g * Kc`` elements). A ``v0``/``v1`` tap touches at
    most ``2**n`` cells. Results are deterministic and independent of the
    number of CPU threads; the gradient of a broadcast ``P`` is summed over
    output channels in a fixed order.

    Gradients at kinks: the triangles of ``v0``, ``v1`` and ``max`` have
    kinks at integer distances, and ``|SIG|`` at ``SIG = 0``. There the
    gradient is the one-sided derivative from above (as the parameter
    increases). In particular a tap at an integer position gets the gradient
    of moving towards higher indices, not the zero of DCLS 0.1.x, so taps
    initialised or rounded onto the grid keep learning; and ``max`` with
    ``SIG = 0`` learns its width. Elsewhere it is the ordinary derivative.

    float16 and bfloat16 inputs are computed in float32 and the kernel is
    returned in the input dtype. Under autocast the op is not cast: with
    float32 parameters the construction runs in float32, and the convolution
    that consumes the kernel is what autocast lowers. The op is a dispatcher
    op (``torch.ops.learnable_ops.dcls_construct``) with a registered backward
    (``dcls_construct_backward``; differentiating it again raises
    ``NotImplementedError``) and fake kernels,
    so ``torch.compile(fullgraph=True)`` and ``torch.export`` work.

    Args:
        weight: ``(Co, Ci/g, Kc)`` tap weights, floating point, ``Kc >= 1``.
        P: ``(n, Co, Ci/g, Kc)`` tap positions relative to the kernel centre,
            or ``(n, 1, Ci/g, Kc)`` shared by all output channels. Same dtype
            and device as ``weight``.
        SIG: shape of ``P``, the widths, for ``'gauss'`` and ``'max'``;
            ``None`` for ``'v0'`` and ``'v1'``.
        dilated_kernel_size: ``n`` ints ``D_a >= 1`` (``n`` = 1, 2 or 3), or one
            int used for each of the ``P.shape[0]`` axes.
        version: ``'v0'``, ``'v1'``, ``'max'`` or ``'gauss'``.

    Returns:
        The dense kernel ``(Co, Ci/g, *D)``, contiguous, of ``weight``'s dtype.

    Raises:
        TypeError: a non-tensor or non-floating argument, mismatched dtypes.
        ValueError: a wrong shape, ``Kc == 0``, ``D_a < 1``, an unknown version
            (the message lists the valid ones), ``SIG`` missing or superfluous.
    """
    # Validation is on every training step's path, and on the GPU the op's host time is its
    # cost: each check reads a shape or attribute once and builds no intermediate tuples.
    check_floating(weight, "weight")
    check_floating(P, "P")
    version = normalize_dcls_version(version)
    if weight.dim() != 3:
        raise ValueError(
            f"weight must have shape (out_channels, in_channels / groups, kernel_count), got {tuple(weight.shape)}"
        )
    co, cig, kc = weight.shape
    if kc < 1:
        raise ValueError(f"kernel_count (weight.shape[2]) must be >= 1, got {kc}")
    if P.dim() != 4:
        raise ValueError(f"P must have shape (n, out_channels or 1, in_channels / groups, kernel_count), got {tuple(P.shape)}")
    p_n, p_co, p_cig, p_kc = P.shape
    # One int stands for every axis of P.
    size = int_tuple(dilated_kernel_size, "dilated_kernel_size", p_n if isinstance(dilated_kernel_size, int) else None)
    n = len(size)
    if n not in (1, 2, 3):
        raise ValueError(f"dilated_kernel_size must have 1, 2 or 3 entries, got {size}")
    if min(size) < 1:
        raise ValueError(f"dilated_kernel_size must be >= 1 on every axis, got {size}")
    if p_n != n or (p_co != co and p_co != 1) or p_cig != cig or p_kc != kc:
        raise ValueError(
            f"P must have shape ({n}, {co} or 1, {cig}, {kc}) for weight of shape {tuple(weight.shape)} "
            f"and dilated_kernel_size {size}, got {tuple(P.shape)}"
        )
    if version in DCLS_VERSIONS_WITH_SIG:
        if SIG is None:
            raise ValueError(f"SIG is required by version {version!r} and must have the shape of P, {tuple(P.shape)}")
        check_floating(SIG, "SIG")
        if SIG.shape != P.shape:
            raise ValueError(f"SIG must have the shape of P, {tuple(P.shape)}, got {tuple(SIG.shape)}")
    elif SIG is not None:
        raise ValueError(f"SIG is only used by versions 'gauss' and 'max'; pass None for version {version!r}")
    dtype, device = weight.dtype, weight.device
    if P.dtype != dtype:
        raise TypeError(f"weight and P must have the same dtype, got {dtype} and {P.dtype}")
    if SIG is not None and SIG.dtype != dtype:
        raise TypeError(f"weight and SIG must have the same dtype, got {dtype} and {SIG.dtype}")
    if P.device != device or (SIG is not None and SIG.device != device):
        check_same_device(("weight", weight), ("P", P), ("SIG", SIG))
    size = list(size)
    if wants_direct_autograd(weight, P, SIG):
        # Eager training: the registered autograd entered directly (ops/_direct_autograd.py),
        # which roughly halves the host time of a call (the GPU work is a few microseconds).
        return _DclsConstructDirect.apply(weight, P, SIG, size, version)
    return torch.ops.learnable_ops.dcls_construct.default(weight, P, SIG, size, version)


@torch.library.register_fake("learnable_ops::dcls_construct")
def _dcls_construct_fake(weight, P, SIG, dilated_kernel_size, version):
    return weight.new_empty((weight.shape[0], weight.shape[1], *dilated_kernel_size))


@torch.library.register_fake("learnable_ops::dcls_construct_backward")
def _dcls_construct_backward_fake(grad_kernel, weight, P, SIG, dilated_kernel_size, version):
    grad_sig = SIG.new_empty(SIG.shape) if SIG is not None else weight.new_empty((0,))
    return weight.new_empty(weight.shape), P.new_empty(P.shape), grad_sig


def _setup_context(ctx, inputs, output):
    weight, P, SIG, ctx.dilated_kernel_size, ctx.version = inputs
    ctx.save_for_backward(weight, P, SIG)


def _backward(ctx, grad_kernel):
    weight, P, SIG = ctx.saved_tensors
    # The kernels make grad_kernel contiguous themselves.
    grad_weight, grad_P, grad_SIG = torch.ops.learnable_ops.dcls_construct_backward.default(
        grad_kernel, weight, P, SIG, ctx.dilated_kernel_size, ctx.version
    )
    return grad_weight, grad_P, (grad_SIG if SIG is not None else None), None, None


def _no_double_backward(ctx, *grads):
    raise NotImplementedError(
        "dcls_construct has no second derivative: backpropagating through its gradient "
        "(dcls_construct_backward) is not implemented"
    )


def _jvp(inputs, tangents):
    # The kernel is linear in the weights (every version normalises with P and SIG alone). The
    # derivatives in P and SIG exist only as the backward op's adjoint, with no forward form.
    weight, P, SIG, dilated_kernel_size, version = inputs
    return torch.ops.learnable_ops.dcls_construct.default(tangents[0], P, SIG, dilated_kernel_size, version)


# Without grad mode (a backward pass without create_graph) the backward op records nothing,
# so it runs below autograd: its registered autograd (which only refuses a second derivative)
# would be a second round trip through Python on every step.
register_autograd(
    "learnable_ops::dcls_construct",
    backward_below_autograd(_backward),
    setup_context=_setup_context,
    jvp=_jvp,
    tangent_arguments=("weight",),
)
# Differentiating the gradient raises, through the dispatcher, as the registered double backward does.
_DclsConstructDirect = direct_autograd(torch.ops.learnable_ops.dcls_construct.default, _setup_context, _backward)
# An explicit error instead of autograd's silent fallthrough (which would drop these terms), in
# reverse and in forward mode.
register_autograd(
    "learnable_ops::dcls_construct_backward", _no_double_backward, setup_context=lambda ctx, inputs, output: None
)
