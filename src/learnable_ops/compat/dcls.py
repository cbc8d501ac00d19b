"""DCLS 0.1.x checkpoints.

DCLS 0.1.x (PyPI ``dcls``) stores the same parameters as our layers (``weight``,
``P``, ``SIG``, ``bias``, same shapes) but builds kernels with other axis
conventions. Writing ``h_a = floor(D_a / 2)``, its tap centre ``P[a] + h_a`` moves
along kernel axis ``pi(a)``:

* ``v1``, ``max``, ``gauss`` (n >= 2): ``pi(a) = n - 1 - a``, reversed, while the
  offset (and its clamp) still use ``D_a``;
* ``v0`` in 2-D: ``pi(a) = a`` (``P[0]`` drives rows, as ours);
* ``v0`` in 3-D: ``pi = (0, 2, 1)``;
* 1-D layers and the mixed layers (one learned axis): ``pi(a) = a``.

Ours always uses ``pi(a) = a``, so loading sets ``P'[pi(a)] = P[a] + h_a - h_pi(a)``
and ``SIG'[pi(a)] = SIG[a]``: every tap has the same centre and width, and the
layer's output is the one 0.1.x computes (to float rounding). The unreleased
``Dcls2_1d`` of DCLS's git HEAD used a Gaussian width ``|SIG| + 1`` instead of
``|SIG| + 0.27``; its ``gauss`` SIG becomes ``|SIG| + 0.73``.

After loading, ``clamp_positions`` clamps ``P'[b]`` with ``D_b``; for non-square
kernels this range differs from 0.1.x's (which was inconsistent with its own axes).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from learnable_ops.nn.dcls import Dcls2_1d, _DclsBase

__all__ = ["load_dcls_state_dict"]

# Extra Gaussian width of DCLS's Dcls2_1d (|SIG| + 1.0) over ours (|SIG| + 0.27).
_DCLS2_1D_SIGMA_SHIFT = 1.0 - 0.27


def dcls01_axis_map(version: str, learned_dims: int) -> tuple[int, ...]:
    """``pi``: the kernel axis that DCLS 0.1.x's ``P[a]`` drives, for each ``a``."""
    n = learned_dims
    if n == 1:
        return (0,)
    if version == "v0":
        return (0, 2, 1) if n == 3 else tuple(range(n))
    return tuple(n - 1 - a for a in range(n))


def _convert_positions(P: torch.Tensor, axis_map, half) -> torch.Tensor:
    out = torch.empty_like(P)
    for a, b in enumerate(axis_map):
        out[b] = P[a] + (half[a] - half[b])
    return out


def _convert_sigma(SIG: torch.Tensor, axis_map, shift: float) -> torch.Tensor:
    out = torch.empty_like(SIG)
    for a, b in enumerate(axis_map):
        out[b] = SIG[a].abs() + shift if shift else SIG[a]
    return out


def load_dcls_state_dict(
    module: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True
) -> tuple[list[str], list[str]]:
    """Loads a state_dict saved by DCLS 0.1.x so that outputs are identical.

    ``module`` is a learnable_ops DCLS layer, or any model containing them, built
    with the same arguments (``version`` above all) as the 0.1.x layers that saved
    ``state_dict``. The ``P`` and ``SIG`` entries of every DCLS layer are converted to
    our axis convention (see :mod:`learnable_ops.compat.dcls`); everything else
    loads as is. Shared positions (one ``P`` assigned to several layers) load once
    per name, with the same value.

    Args:
        module: the model to load into.
        state_dict: the 0.1.x state_dict (keys as ``module.state_dict()``'s).
        strict: as in :meth:`torch.nn.Module.load_state_dict`.

    Returns:
        :meth:`torch.nn.Module.load_state_dict`'s ``(missing_keys, unexpected_keys)``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to tensors, got {type(state_dict).__name__}")
    metadata = getattr(state_dict, "_metadata", None)
    converted = OrderedDict(state_dict)
    if metadata is not None:
        converted._metadata = metadata
    for name, layer in module.named_modules(remove_duplicate=False):
        if not isinstance(layer, _DclsBase):
            continue
        prefix = f"{name}." if name else ""
        axis_map = dcls01_axis_map(layer.version, len(layer.dilated_kernel_size))
        half = layer.position_bounds
        with torch.no_grad():
            if prefix + "P" in converted:
                converted[prefix + "P"] = _convert_positions(converted[prefix + "P"], axis_map, half)
            if prefix + "SIG" in converted:
                shift = _DCLS2_1D_SIGMA_SHIFT if isinstance(layer, Dcls2_1d) and layer.version == "gauss" else 0.0
                converted[prefix + "SIG"] = _convert_sigma(converted[prefix + "SIG"], axis_map, shift)
    return module.load_state_dict(converted, strict=strict)
