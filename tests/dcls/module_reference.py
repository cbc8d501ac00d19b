"""Slow, obviously correct float64 references for whole DCLS layers (used by the module tests).

``reference_kernel`` and ``reference_forward`` build a layer's kernel and output from
``reference.reference_construct`` (the formulas, ``P[a]`` driving kernel axis ``a``),
looping over the dense taps of the mixed variants one by one, with numpy.pad for padding.
"""

import numpy as np
import torch
import torch.nn.functional as F

from reference import reference_construct

NUMPY_MODE = {
    "zeros": "constant", "constant": "constant", "reflect": "reflect", "replicate": "edge", "border": "edge",
    "edge": "edge", "circular": "wrap", "periodic": "wrap", "wrap": "wrap", "symmetric": "symmetric",
}
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


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
