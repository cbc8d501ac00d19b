"""DCLS layers end to end: what a model pays for a ``Dcls2d``.

* Training step (forward + backward) of a ConvNeXt-dcls depthwise layer
  (``D = 17``, ``Kc = 34``, ``gauss``) against the ``nn.Conv2d`` it replaces
  (depthwise 7x7), and against a plain depthwise conv with the same dense
  17x17 kernel (the ratio is then the cost of constructing the kernel).
* Small-batch inference in eval mode: the cached kernel against rebuilding it
  at every call (``invalidate_kernel_cache`` before each forward), for a
  dense 64 -> 64 layer (``D = 23``, ``Kc = 26``) where construction dominates.

Until the fast depthwise/sparse paths are wired into the layers, every
``method`` runs construct + ``F.conv2d``.
"""

from __future__ import annotations

import torch
from torch import nn

from learnable_ops.benchmarks.runner import Case
from learnable_ops.nn import Dcls2d


def _train_step(module, x, grad):
    def step():
        module.zero_grad(set_to_none=True)
        module(x).backward(grad)

    return step


def cases(device: str, size: str = "full") -> list[Case]:
    small = size == "small" or not device.startswith("cuda")
    batch, channels, hw = (2, 32, 28) if small else (64, 96, 56)
    x = torch.randn(batch, channels, hw, hw, device=device)
    grad = torch.randn_like(x)
    shape = f"{tuple(x.shape)} D=17 Kc=34"
    dcls = Dcls2d(channels, channels, 34, dilated_kernel_size=17, padding=8, groups=channels, device=device)
    dw7 = nn.Conv2d(channels, channels, 7, padding=3, groups=channels, device=device)
    dw17 = nn.Conv2d(channels, channels, 17, padding=8, groups=channels, device=device)
    out = [
        Case("dcls_layers", "Dcls2d gauss dw fwd+bwd", shape, _train_step(dcls, x, grad),
             _train_step(dw7, x, grad), "nn.Conv2d dw 7x7"),
        Case("dcls_layers", "Dcls2d gauss dw fwd+bwd", shape, _train_step(dcls, x, grad),
             _train_step(dw17, x, grad), "nn.Conv2d dw 17x17"),
    ]

    dense_ch, dense_hw = (16, 16) if small else (64, 32)
    y = torch.randn(1, dense_ch, dense_hw, dense_hw, device=device)
    dense = Dcls2d(dense_ch, dense_ch, 26, dilated_kernel_size=23, padding=11, device=device).eval()

    def cached():
        with torch.no_grad():
            return dense(y)

    def rebuilt():
        dense.invalidate_kernel_cache()
        with torch.no_grad():
            return dense(y)

    out.append(Case("dcls_layers", "Dcls2d gauss eval, cached kernel", f"{tuple(y.shape)} dense D=23 Kc=26",
                    cached, rebuilt, "kernel rebuilt per call"))
    return out
