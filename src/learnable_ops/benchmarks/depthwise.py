"""``depthwise_conv2d`` and ``dcls_sparse_depthwise`` against the framework's depthwise conv.

GPU (``size='full'``): batch 64 at the four ConvNeXt-T stage shapes, forward and
forward+backward, ours at 17x17 against cuDNN at 17x17 (target <= 0.5x) and at
7x7 (target <= 1.0x), our 7x7 against cuDNN 7x7, and the sparse DCLS path
(v0, 34 taps in 17x17) against cuDNN 7x7.
CPU: the issue's target shape 32x96x56x56 at 17x17 (target <= 0.5x torch's
own), plus smaller batches at every stage shape, and channels_last input against
torch's channels_last (oneDNN) kernels; ``size='small'`` runs in well under a
minute.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops.benchmarks.runner import Case

STAGES = ((96, 56), (192, 28), (384, 14), (768, 7))
"""ConvNeXt-T stage shapes (channels, plane size)."""


def _fwd_bwd(fn, leaves, grad):
    def run():
        out = fn()
        torch.autograd.backward(out, grad)
        for t in leaves:
            t.grad = None

    return run


def _conv_cases(shape, k, device, dtype, baselines, with_bwd=True, channels_last=False):
    """Ours at k x k against the framework at each (baseline kernel, target); with
    ``channels_last`` both read a channels_last input (and gradient), as ConvNeXt's blocks
    hand their depthwise convs."""
    n, c, h, w = shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(shape, device=device, dtype=dtype).to(memory_format=fmt).requires_grad_()
    ours_w = torch.randn(c, 1, k, k, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(shape, device=device, dtype=dtype).to(memory_format=fmt)
    layout = " channels_last" if channels_last else ""
    cases = []
    for bk, target in baselines:
        base_w = torch.randn(c, 1, bk, bk, device=device, dtype=dtype, requires_grad=True)
        name = "cuDNN" if device.startswith("cuda") else "torch"
        base = f"{name} dw {bk}x{bk}"
        extra = {"kernel": k, "baseline_kernel": bk, "dtype": str(dtype).replace("torch.", ""),
                 "channels_last": channels_last}
        cases.append(
            Case("depthwise", f"dw {k}x{k}{layout} fwd", str(tuple(shape)),
                 lambda: lo.depthwise_conv2d(x.detach(), ours_w.detach()),
                 lambda bw=base_w, bk=bk: F.conv2d(x.detach(), bw.detach(), padding=bk // 2, groups=c),
                 base, target=target, extra=extra)
        )
        if with_bwd:
            cases.append(
                Case("depthwise", f"dw {k}x{k}{layout} fwd+bwd", str(tuple(shape)),
                     _fwd_bwd(lambda: lo.depthwise_conv2d(x, ours_w), [x, ours_w], grad),
                     _fwd_bwd(lambda bw=base_w, bk=bk: F.conv2d(x, bw, padding=bk // 2, groups=c), [x, base_w], grad),
                     base, target=target, extra=extra)
            )
    return cases


def _sparse_cases(shape, device, dtype, kernel_count=34, D=17, baseline_k=7, target=None, against_ours=False):
    """The sparse DCLS path (v0) fwd+bwd against a dense depthwise conv: the
    framework's (cuDNN/ATen) at ``baseline_k``, or ours at ``D`` (``against_ours``,
    the comparison behind the dispatch policy)."""
    n, c, h, w = shape
    x = torch.randn(shape, device=device, dtype=dtype, requires_grad=True)
    W = torch.randn(c, 1, kernel_count, device=device, dtype=dtype, requires_grad=True)
    P = ((torch.rand(2, c, 1, kernel_count, device=device) * 2 - 1) * (D // 2)).requires_grad_()
    grad = torch.randn(shape, device=device, dtype=dtype)
    extra = {"kernel_count": kernel_count, "dilated_kernel_size": D, "version": "v0"}
    if against_ours:
        base_w = torch.randn(c, 1, D, D, device=device, dtype=dtype, requires_grad=True)
        baseline = _fwd_bwd(lambda: lo.depthwise_conv2d(x, base_w), [x, base_w], grad)
        label = f"ours dense dw {D}x{D}"
    else:
        base_w = torch.randn(c, 1, baseline_k, baseline_k, device=device, dtype=dtype, requires_grad=True)
        baseline = _fwd_bwd(lambda: F.conv2d(x, base_w, padding=baseline_k // 2, groups=c), [x, base_w], grad)
        label = f"{'cuDNN' if device.startswith('cuda') else 'torch'} dw {baseline_k}x{baseline_k}"
    return [
        Case("depthwise", f"dcls sparse v0 {kernel_count}/{D}x{D} fwd+bwd", str(tuple(shape)),
             _fwd_bwd(lambda: lo.dcls_sparse_depthwise(x, W, P, None, D, 1, D // 2, "v0"), [x, W, P], grad),
             baseline, label, target=target, extra=extra)
    ]


def cases(device: str, size: str = "full") -> list[Case]:
    dtype = torch.float32
    out: list[Case] = []
    if device.startswith("cuda"):
        batch = 64 if size == "full" else 8
        for c, hw in STAGES:
            shape = (batch, c, hw, hw)
            out += _conv_cases(shape, 17, device, dtype, [(17, 0.5), (7, 1.0)])
            out += _conv_cases(shape, 7, device, dtype, [(7, None)])
            out += _sparse_cases(shape, device, dtype, target=1.0)
            out += _sparse_cases(shape, device, dtype, against_ours=True)
            out += _sparse_cases(shape, device, dtype, kernel_count=72, against_ours=True)
        if size == "full":
            for c, hw in STAGES[:1]:
                out += _conv_cases((batch, c, hw, hw), 17, device, torch.bfloat16, [(17, 0.5), (7, 1.0)])
        return out
    if size == "small":
        out += _conv_cases((2, 96, 56, 56), 17, device, dtype, [(17, 0.5)])
        out += _conv_cases((2, 96, 56, 56), 7, device, dtype, [(7, None)], with_bwd=False)
        out += _sparse_cases((2, 96, 56, 56), device, dtype, against_ours=True)
        out += _conv_cases((2, 96, 56, 56), 7, device, dtype, [(7, None)], channels_last=True)
        return out
    out += _conv_cases((32, 96, 56, 56), 17, device, dtype, [(17, 0.5)])
    for k in (3, 5, 7):
        out += _conv_cases((8, 96, 56, 56), k, device, dtype, [(k, None)])
    for c, hw in STAGES[1:]:
        out += _conv_cases((8, c, hw, hw), 17, device, dtype, [(17, 0.5)])
    for kc in (34, 72):
        out += _sparse_cases((8, 96, 56, 56), device, dtype, kernel_count=kc, against_ours=True)
    # channels_last input (cpp/depthwise_nhwc.cpp against oneDNN's channels_last kernels).
    for k in (3, 7, 17):
        out += _conv_cases((8, 96, 56, 56), k, device, dtype, [(k, None)], channels_last=True)
    for c, hw in STAGES[2:]:
        out += _conv_cases((8, c, hw, hw), 17, device, dtype, [(17, None)], channels_last=True)
    return out
