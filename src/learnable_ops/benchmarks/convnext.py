"""timm ``convnext_tiny`` with every 7x7 depthwise conv replaced by DCLS (34 taps
in 17x17, versions v0 and gauss), against the unmodified model (cuDNN).

* inference at batch 128 in fp32 and in bf16 autocast (target: DCLS/baseline time <= 1.0);
* a training step (forward, backward, SGD step) at batch 64 in bf16 autocast (target <= 1/0.95).

timm is a benchmark dependency only: without it ``cases`` returns no case.
The DCLS layer here is a small stand-in (``DclsDepthwise``) that holds W, P
(and SIG for gauss) like ``Dcls2d`` and runs the path ``choose_method`` picks.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops.benchmarks.runner import Case
from learnable_ops.ops.dcls_dispatch import choose_method

GAUSS_SIGMA_FLOOR = 0.27


def construct_kernel(weight, P, SIG, dilated_kernel_size, version):
    """Dense depthwise DCLS kernel ``(C, 1, *D)``: the native ``dcls_construct``
    where it is built, else the same formulas in plain PyTorch."""
    if hasattr(torch.ops.learnable_ops, "dcls_construct"):
        return torch.ops.learnable_ops.dcls_construct(weight, P, SIG, list(dilated_kernel_size), version)
    D = tuple(dilated_kernel_size)
    n = len(D)
    C, _, Kc = weight.shape
    grids = torch.meshgrid(*[torch.arange(d, device=weight.device, dtype=P.dtype) for d in D], indexing="ij")
    shape = (C, Kc) + (1,) * n
    if version == "gauss":
        z = 0
        for a in range(n):
            sigma = (SIG[a].reshape(shape).abs() + GAUSS_SIGMA_FLOOR)
            z = z + ((grids[a] - (P[a].reshape(shape) + D[a] // 2)) / sigma) ** 2
        phi = torch.exp(-0.5 * z)
    else:
        phi = 1
        for a in range(n):
            phi = phi * torch.relu(1 - (grids[a] - (P[a].reshape(shape) + D[a] // 2)).abs())
    if version != "v0":
        phi = phi / (phi.sum(dim=tuple(range(2, 2 + n)), keepdim=True) + 1e-7)
    return (weight.reshape(shape) * phi).sum(1, keepdim=True)


class DclsDepthwise(nn.Module):
    """A depthwise DCLS 2D layer (Dcls2d's parameters: weight (C, 1, Kc), P (2, C, 1, Kc),
    SIG for gauss, bias) running the path ``choose_method`` picks, or ``method``."""

    def __init__(self, channels, kernel_count=34, dilated_kernel_size=17, version="v0", bias=True, method="auto",
                 device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.channels, self.kernel_count, self.version = channels, kernel_count, version
        self.dilated_kernel_size = (dilated_kernel_size,) * 2
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_count, **factory))
        self.P = nn.Parameter(torch.empty(2, channels, 1, kernel_count, **factory))
        self.SIG = nn.Parameter(torch.empty(2, channels, 1, kernel_count, **factory)) if version == "gauss" else None
        self.bias = nn.Parameter(torch.empty(channels, **factory)) if bias else None
        self.method = method
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.trunc_normal_(self.weight, std=0.02)
        with torch.no_grad():
            self.P.normal_(0, 0.5).clamp_(-(self.dilated_kernel_size[0] // 2), self.dilated_kernel_size[0] // 2)
            if self.SIG is not None:
                self.SIG.fill_(0.23)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def resolved_method(self, x):
        if self.method != "auto":
            return self.method
        return choose_method(self.kernel_count, self.dilated_kernel_size, self.channels, self.channels,
                             self.channels, self.version, x.device, x.dtype)

    def forward(self, x):
        # Our ops are not on autocast's cast lists: run them in the autocast dtype
        # as the framework conv they replace would.
        if torch.is_autocast_enabled(x.device.type):
            x = x.to(torch.get_autocast_dtype(x.device.type))
        pad = self.dilated_kernel_size[0] // 2
        bias = None if self.bias is None else self.bias.to(x.dtype)
        method = self.resolved_method(x)
        if method == "sparse":
            return lo.dcls_sparse_depthwise(x, self.weight.to(x.dtype), self.P, bias, self.dilated_kernel_size, 1, pad,
                                            self.version)
        K = construct_kernel(self.weight, self.P, self.SIG, self.dilated_kernel_size, self.version).to(x.dtype)
        if method == "dense":
            return lo.depthwise_conv2d(x, K, bias, 1, pad)
        return F.conv2d(x, K, bias, padding=pad, groups=self.channels)


def dcls_convnext(model, version, kernel_count=34, dilated_kernel_size=17, method="auto"):
    """A copy of a timm ConvNeXt whose depthwise convs are ``DclsDepthwise`` layers."""
    model = copy.deepcopy(model)
    for stage in model.stages:
        for block in stage.blocks:
            conv = block.conv_dw
            block.conv_dw = DclsDepthwise(conv.in_channels, kernel_count, dilated_kernel_size, version,
                                          conv.bias is not None, method, conv.weight.device, conv.weight.dtype)
    return model


def chosen_methods(model, x):
    """The path each DCLS layer runs for an input like ``x``, by channel count."""
    return {m.channels: m.resolved_method(x) for m in model.modules() if isinstance(m, DclsDepthwise)}


def cases(device: str, size: str = "full") -> list[Case]:
    try:
        import timm
    except ImportError:
        print("timm is not installed: skipping the ConvNeXt benchmark")
        return []
    full = size == "full" and device.startswith("cuda")
    infer_batch, train_batch = (128, 64) if full else (4, 2)
    base = timm.create_model("convnext_tiny", pretrained=False).to(device)
    out = []
    for version in ("v0", "gauss"):
        dcls = dcls_convnext(base, version).to(device)
        x = torch.randn(infer_batch, 3, 224, 224, device=device)
        methods = chosen_methods(dcls, x)
        for label, dtype in (("fp32", None), ("bf16 autocast", torch.bfloat16)):
            def infer(m, dtype=dtype):
                def run():
                    with torch.no_grad(), torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None):
                        m.eval()(x)
                return run

            out.append(Case("convnext", f"convnext_tiny-dcls {version} inference {label}", f"({infer_batch}, 3, 224, 224)",
                            infer(dcls), infer(base), "convnext_tiny (cuDNN)", target=1.0,
                            extra={"version": version, "methods": methods}))

        xt = torch.randn(train_batch, 3, 224, 224, device=device)
        target = torch.randint(0, 1000, (train_batch,), device=device)

        def train_step(m):
            opt = torch.optim.SGD(m.parameters(), lr=1e-4)

            def run():
                m.train()
                with torch.autocast(device.split(":")[0], dtype=torch.bfloat16):
                    loss = F.cross_entropy(m(xt), target)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            return run

        out.append(Case("convnext", f"convnext_tiny-dcls {version} train step bf16 autocast", f"({train_batch}, 3, 224, 224)",
                        train_step(dcls), train_step(copy.deepcopy(base)), "convnext_tiny (cuDNN)", target=1 / 0.95,
                        extra={"version": version, "methods": chosen_methods(dcls, xt)}))
    return out
