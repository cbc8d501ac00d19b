"""Slow, obviously correct float64 references for the DCLS layers (used by the module tests).

``reference_construct`` spells out the issue's formulas tap by tap and axis by
axis, ``P[a]`` driving kernel axis ``a``; ``reference_kernel`` and
``reference_forward`` build whole layers from it with numpy.pad for padding.
"""

import numpy as np
import torch
import torch.nn.functional as F

NUMPY_MODE = {
    "zeros": "constant", "constant": "constant", "reflect": "reflect", "replicate": "edge", "border": "edge",
    "edge": "edge", "circular": "wrap", "periodic": "wrap", "wrap": "wrap", "symmetric": "symmetric",
}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def reference_construct(weight, P, SIG, dilated_kernel_size, version):
    """K[o, i, u] = sum_k W[o, i, k] phi_k(u) with c_a = P[a] + floor(D_a / 2) on axis a."""
    D = tuple(dilated_kernel_size)
    n = len(D)
    co, cig, kc = weight.shape
    P = P.expand(n, co, cig, kc)
    SIG = None if SIG is None else SIG.expand(n, co, cig, kc)
    grid = torch.meshgrid(*[torch.arange(d, dtype=weight.dtype) for d in D], indexing="ij")
    kernel = weight.new_zeros((co, cig) + D)
    view = (co, cig) + (1,) * n
    for k in range(kc):
        phi = weight.new_ones((co, cig) + D)
        for a in range(n):
            c = (P[a, :, :, k] + D[a] // 2).reshape(view)
            u = grid[a]
            if version == "v0":
                f = torch.floor(c)
                r = c - f
                phi = phi * ((1 - r) * (u == f) + r * (u == f + 1))
            elif version == "v1":
                phi = phi * torch.relu(1 - (u - c).abs())
            elif version == "max":
                s = SIG[a, :, :, k].abs().reshape(view) + 1
                phi = phi * torch.relu(s - (u - c).abs())
            elif version == "gauss":
                sigma = SIG[a, :, :, k].abs().reshape(view) + 0.27
                phi = phi * torch.exp(-0.5 * ((u - c) / sigma) ** 2)
            else:
                raise ValueError(version)
        if version != "v0":
            phi = phi / (phi.sum(dim=tuple(range(2, 2 + n)), keepdim=True) + 1e-7)
        kernel = kernel + weight[:, :, k].reshape(view) * phi
    return kernel


def reference_kernel(layer):
    """The dense kernel of any DCLS layer, dense taps looped over one by one."""
    W, P = layer.weight, layer.P
    SIG = layer.SIG if layer.version in ("gauss", "max") else None
    dense = tuple(layer.dense_kernel_size)
    if not dense:
        kernel = reference_construct(W, P, SIG, layer.dilated_kernel_size, layer.version)
        return kernel.reshape(kernel.shape[:2] + tuple(layer.kernel_size))
    co, cig = W.shape[:2]
    kernel = W.new_zeros((co, cig) + dense + tuple(layer.dilated_kernel_size))
    for d in np.ndindex(*dense):
        idx = (slice(None), slice(None)) + d
        sig = None if SIG is None else SIG[(slice(None),) + idx]
        kernel[idx] = reference_construct(W[idx], P[(slice(None),) + idx], sig, layer.dilated_kernel_size, layer.version)
    return kernel


def numpy_pad(x, pads, mode):
    """pads: (before, after) per spatial axis, first axis first."""
    a = x.detach().double().numpy()
    return torch.from_numpy(np.pad(a, [(0, 0), (0, 0)] + [tuple(p) for p in pads], mode=NUMPY_MODE[mode]))


def layer_pads(layer, nd):
    if layer.padding == "valid":
        return [(0, 0)] * nd
    if layer.padding == "same":
        return [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in layer.kernel_size]
    return [(p, p) for p in layer.padding]


def reference_forward(layer, x):
    """Layer output from the reference kernel; differentiable in the parameters (not in x
    for non-zero padding modes)."""
    nd = x.dim() - 2
    kernel = reference_kernel(layer)
    pads = layer_pads(layer, nd)
    if layer.padding_mode in ("zeros", "constant"):
        flat = [v for pair in reversed(pads) for v in pair]
        x = F.pad(x, flat)
    else:
        x = numpy_pad(x, pads, layer.padding_mode).to(x.dtype)
    return CONV[nd](x, kernel, layer.bias, layer.stride, 0, 1, layer.groups)
