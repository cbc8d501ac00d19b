"""``diff_conv2d`` against ``F.conv2d(padding='same')`` (zero padding) on the same inputs.

Cases: K = 3, 5, 7, dense and depthwise, forward+backward (the issue's targets:
time <= 1.15x and peak memory <= 1.1x on the GPU, time <= 1.3x on the CPU) and
forward only. The ``pad+valid`` cases time the design alternative, the pad
op's polynomial mode followed by a valid convolution, against the same baseline.

Forward+backward returns the input and weight gradients with ``torch.autograd.grad`` on
both sides (as inside a network) rather than accumulating them into leaves' ``.grad``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops.benchmarks.runner import Case

KERNEL_SIZES = (3, 5, 7)


def _shape(device: str, size: str) -> tuple[int, int, int, int]:
    if size == "small":
        return (2, 16, 64, 64)
    return (16, 64, 128, 128) if device.startswith("cuda") else (8, 32, 128, 128)


def cases(device: str, size: str = "full") -> list[Case]:
    n, c, h, w = _shape(device, size)
    target = 1.15 if device.startswith("cuda") else 1.3
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(n, c, h, w, device=device, generator=gen, requires_grad=True)
    grad = torch.randn(n, c, h, w, device=device, generator=gen)
    out = []
    for k in KERNEL_SIZES:
        for groups, kind in ((1, "dense"), (c, "depthwise")):
            weight = torch.randn(c, c // groups, k, k, device=device, generator=gen).mul_(0.1).requires_grad_()
            p = k // 2
            label = f"{kind} K={k}"
            shape = f"{(n, c, h, w)} {kind} K={k}"

            def ours(weight=weight, groups=groups):
                return torch.autograd.grad(lo.diff_conv2d(x, weight, groups=groups), (x, weight), grad)

            def zero(weight=weight, groups=groups):
                return torch.autograd.grad(F.conv2d(x, weight, padding="same", groups=groups), (x, weight), grad)

            def pad_valid(weight=weight, groups=groups, p=p, k=k):
                padded = lo.pad(x, [p] * 4, "polynomial", order=k - 1)
                return torch.autograd.grad(F.conv2d(padded, weight, groups=groups), (x, weight), grad)

            def ours_fwd(weight=weight, groups=groups):
                with torch.no_grad():
                    lo.diff_conv2d(x, weight, groups=groups)

            def zero_fwd(weight=weight, groups=groups):
                with torch.no_grad():
                    F.conv2d(x, weight, padding="same", groups=groups)

            baseline = "F.conv2d same"
            out.append(Case("diffconv", f"{label} fwd+bwd", shape, ours, zero, baseline, target=target))
            out.append(Case("diffconv", f"{label} fwd", shape, ours_fwd, zero_fwd, baseline))
            out.append(Case("diffconv", f"{label} pad+valid fwd+bwd", shape, pad_valid, zero, baseline))
    return out
