"""Plain-PyTorch reference of the DCLS kernel construction, straight from the formulas.

Slow and memory-hungry on purpose (it materialises every tap's profile over the
whole grid, ``(Co, Ci/g, Kc, *D)``), obviously correct, float64. Reused by the
module tests.
"""

from __future__ import annotations

import torch

NORM_EPS = 1e-7
GAUSS_SIGMA_FLOOR = 0.27


def _grid(P, dilated_kernel_size, a):
    """The cell indices ``u_a`` of grid axis ``a``, shaped (D_0|1, ..., D_{n-1}|1)."""
    n = len(dilated_kernel_size)
    D = dilated_kernel_size[a]
    return torch.arange(D, dtype=P.dtype, device=P.device).view([D if b == a else 1 for b in range(n)])


def _per_tap(t, n):
    """A per-tap (Co|1, Ci/g, Kc) tensor shaped to broadcast against the grid."""
    return t.view(*t.shape, *([1] * n))


def reference_construct(weight, P, SIG, dilated_kernel_size, version):
    """``K[o, i, u] = sum_k W[o, i, k] * phi_k(u)``; see ``learnable_ops.dcls_construct``.

    Args:
        weight: (Co, Ci/g, Kc).
        P: (n, Co or 1, Ci/g, Kc); axis a of P drives kernel axis a.
        SIG: like P (gauss, max) or None.
        dilated_kernel_size: n ints.
        version: 'v0', 'v1', 'max' or 'gauss'.

    Returns:
        (Co, Ci/g, *D).
    """
    D = tuple(dilated_kernel_size)
    n = len(D)
    u = [_grid(P, D, a) for a in range(n)]
    c = [_per_tap(P[a] + D[a] // 2, n) for a in range(n)]
    if version == "gauss":
        sigma = [_per_tap(SIG[a].abs() + GAUSS_SIGMA_FLOOR, n) for a in range(n)]
        phi = torch.exp(-0.5 * sum(((u[a] - c[a]) / sigma[a]) ** 2 for a in range(n)))
    else:
        phi = 1
        for a in range(n):
            if version == "v0":
                # Multilinear interpolation: cell floor(c) gets 1 - r, cell floor(c) + 1 gets r.
                f = torch.floor(c[a])
                r = c[a] - f
                factor = (1 - r) * (u[a] == f) + r * (u[a] == f + 1)
            elif version == "v1":
                factor = torch.clamp(1 - (u[a] - c[a]).abs(), min=0)
            elif version == "max":
                factor = torch.clamp(_per_tap(SIG[a].abs() + 1, n) - (u[a] - c[a]).abs(), min=0)
            else:
                raise ValueError(f"unknown version {version!r}")
            phi = phi * factor
    if version != "v0":
        grid_dims = tuple(range(-n, 0))
        phi = phi / (phi.sum(dim=grid_dims, keepdim=True) + NORM_EPS)
    return (weight.view(*weight.shape, *([1] * n)) * phi).sum(dim=2)
