"""Slow, obviously correct plain-PyTorch references of the shift op (float64).

The shift is separable: along each axis, out[i] = (1 - t) x[map(i - f)] + t x[map(i - f - 1)]
with f = floor(s), t = s - f (active) or f = round(s), t = 0 (sparse), and map the
closed form of numpy.pad's modes (tests check it against numpy.pad itself).
"""

from __future__ import annotations

import math

import torch


def pad_map(p: torch.Tensor, n: int, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Index read by padded coordinate ``p`` (int64) and a 0/1 mask (0 for zeros padding)."""
    inside = (p >= 0) & (p < n)
    if mode == "zeros":
        return p.clamp(0, n - 1), inside.double()
    if mode == "border":
        idx = p.clamp(0, n - 1)
    elif mode == "periodic":
        idx = torch.remainder(p, n)
    elif mode == "reflect":
        if n == 1:
            idx = torch.zeros_like(p)
        else:
            q = torch.remainder(p, 2 * n - 2)
            idx = torch.where(q < n, q, 2 * n - 2 - q)
    elif mode == "symmetric":
        q = torch.remainder(p, 2 * n)
        idx = torch.where(q < n, q, 2 * n - 1 - q)
    else:
        raise ValueError(mode)
    return idx, torch.ones_like(p, dtype=torch.float64)


def _axis_taps(y: torch.Tensor, dim: int, f: int, mode: str, k: int) -> torch.Tensor:
    n = y.shape[dim]
    idx, mask = pad_map(torch.arange(n) - f - k, n, mode)
    shape = [1] * y.dim()
    shape[dim] = n
    return y.index_select(dim, idx) * mask.to(y.dtype).view(shape)


def _shift_channel(xc: torch.Tensor, sc: torch.Tensor, padding_mode: str, rounded: bool) -> torch.Tensor:
    """xc: (N, *spatial), sc: (ndim,) float64 (may require grad)."""
    y = xc
    for k in range(sc.shape[0]):
        dim = 1 + k
        value = float(sc[k].detach())
        if rounded:
            y = _axis_taps(y, dim, int(round(value)), padding_mode, 0)  # Python round: half to even
            continue
        f = math.floor(value)
        t = sc[k] - f  # differentiable in the shift
        y = (1 - t) * _axis_taps(y, dim, f, padding_mode, 0) + t * _axis_taps(y, dim, f, padding_mode, 1)
    return y


def interpolated_shift(x: torch.Tensor, shifts: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Active shift: multilinear interpolation at i - s, differentiable in x and s."""
    return torch.stack([_shift_channel(x[:, c], shifts[c], padding_mode, False) for c in range(x.shape[1])], 1)


def rounded_shift(x: torch.Tensor, shifts: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Sparse forward: integer gather at i - round(s) (no gradient in s)."""
    return torch.stack([_shift_channel(x[:, c], shifts[c], padding_mode, True) for c in range(x.shape[1])], 1)


def reference_shift(x: torch.Tensor, shifts: torch.Tensor, padding_mode: str = "zeros", mode: str = "sparse"):
    """The documented op: sparse = rounded gather, whose shift gradient is that of
    the interpolated shift at the real value (a straight-through surrogate)."""
    if mode == "active":
        return interpolated_shift(x, shifts, padding_mode)
    surrogate = interpolated_shift(x.detach(), shifts, padding_mode)
    return rounded_shift(x, shifts.detach(), padding_mode) + (surrogate - surrogate.detach())
