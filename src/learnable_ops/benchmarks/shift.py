"""Shift layers against their baselines, measured in the same run.

Targets (issue 3):

* GPU, 64x96x56x56 fp32 and bf16: sparse forward <= 1.25x ``x.clone()``; sparse
  forward+backward <= 0.25x and active forward+backward <= 0.4x a depthwise 3x3
  ``nn.Conv2d(96, 96, 3, padding=1, groups=96)`` forward+backward; every padding
  mode within 1.3x of zeros.
* CPU, 32x64x56x56 fp32 (run with 2 threads): forward+backward <= 0.5x the
  depthwise 3x3 conv forward+backward, in every mode.

Forward+backward computes the input and the shift (weight) gradients on both sides, with
``torch.autograd.grad``, as for a layer inside a network: the gradients go to the caller and
are not accumulated into a leaf's ``.grad``. (Accumulating would add the same ``x.grad += g``
pass, about 75 us at the GPU shape, to both sides; the ratios before 2026-12-07 session 7
included it.)
"""

from __future__ import annotations

import torch
from torch import nn

import learnable_ops as lo
from learnable_ops.benchmarks.runner import Case


def _shape(device: str, size: str) -> tuple[int, int, int, int]:
    if size == "small":
        return (8, 32, 56, 56)
    return (64, 96, 56, 56) if device.startswith("cuda") else (32, 64, 56, 56)


def _cases_for(device: str, size: str, dtype: torch.dtype) -> list[Case]:
    shape = _shape(device, size)
    channels = shape[1]
    tag = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(shape, device=device, dtype=dtype)
    conv = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, device=device, dtype=dtype)
    shifts = ((torch.rand(channels, 2, device=device) * 2 - 1) * 1.5).requires_grad_()
    gpu = device.startswith("cuda")

    conv_inputs = (x, conv.weight, conv.bias)

    def conv_fwd_bwd():
        return torch.autograd.grad(conv(x), conv_inputs, grad)

    def shift_fwd_bwd(padding_mode, mode):
        return lambda: torch.autograd.grad(lo.shift(x, shifts, padding_mode, mode), (x, shifts), grad)

    out = []
    if gpu:
        out.append(Case("shift", f"sparse fwd zeros {tag}", str(shape),
                        lambda: lo.shift(x.detach(), shifts.detach(), "zeros", "sparse"),
                        lambda: x.detach().clone(), "x.clone()", target=1.25))
    for mode in lo.SHIFT_MODES:
        target = (0.25 if mode == "sparse" else 0.4) if gpu else 0.5
        for padding_mode in lo.PAD_MODES:
            out.append(Case("shift", f"{mode} fwd+bwd {padding_mode} {tag}", str(shape),
                            shift_fwd_bwd(padding_mode, mode), conv_fwd_bwd, "dw3x3 conv fwd+bwd", target=target))
        for padding_mode in lo.PAD_MODES[1:]:
            out.append(Case("shift", f"{mode} fwd+bwd {padding_mode} vs zeros {tag}", str(shape),
                            shift_fwd_bwd(padding_mode, mode), shift_fwd_bwd("zeros", mode),
                            f"{mode} fwd+bwd zeros", target=1.3 if gpu else None))
        out.append(Case("shift", f"{mode} fwd zeros {tag}", str(shape),
                        lambda m=mode: lo.shift(x.detach(), shifts.detach(), "zeros", m),
                        lambda: conv(x.detach()), "dw3x3 conv fwd"))
    return out


def cases(device: str, size: str = "full") -> list[Case]:
    dtypes = [torch.float32, torch.bfloat16] if device.startswith("cuda") else [torch.float32]
    return [case for dtype in dtypes for case in _cases_for(device, size, dtype)]
