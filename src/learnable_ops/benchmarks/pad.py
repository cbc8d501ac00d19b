"""``pad`` against ``torch.nn.functional.pad`` for the modes F.pad has."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops.benchmarks.runner import Case

MODES = [("zeros", "constant"), ("border", "replicate"), ("periodic", "circular"), ("reflect", "reflect")]


def cases(device: str, size: str = "full") -> list[Case]:
    shape = (64, 96, 56, 56) if size == "full" and device.startswith("cuda") else (32, 64, 56, 56)
    if size == "small":
        shape = (8, 32, 56, 56)
    x = torch.randn(shape, device=device, requires_grad=True)
    pad = [3, 3, 3, 3]
    grad = torch.randn(shape[0], shape[1], shape[2] + 6, shape[3] + 6, device=device)
    out = []
    for ours, theirs in MODES:
        out.append(
            Case("pad", f"{ours} fwd", str(shape), lambda o=ours: lo.pad(x.detach(), pad, o),
                 lambda t=theirs: F.pad(x.detach(), pad, mode=t), f"F.pad {theirs}", target=1.2)
        )
        out.append(
            Case("pad", f"{ours} fwd+bwd", str(shape), lambda o=ours: lo.pad(x, pad, o).backward(grad),
                 lambda t=theirs: F.pad(x, pad, mode=t).backward(grad), f"F.pad {theirs}", target=1.2)
        )
    return out
