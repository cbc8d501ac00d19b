"""Training recipes for DCLS layers.

The published DCLS recipes train positions differently from weights:

* ConvNeXt-dcls and DCLS-Audio: positions (and SIG) without weight decay, at
  5x the learning rate; ConvNeXt-dcls clamps positions after every step and
  shares one ``P`` per stage (:func:`param_groups`, :func:`clamp_positions_after_step`,
  :func:`share_positions`);
* SNN delay learning: positions at 100x the learning rate, a Gaussian width
  frozen and decayed towards a floor over the first quarter of training, and at
  evaluation integer delays with the triangle kernel
  (:class:`SigmaSchedule`, :func:`rounded_positions`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from learnable_ops.nn.dcls import _DclsBase
from learnable_ops.ops.dcls import normalize_dcls_version

__all__ = [
    "dcls_layers",
    "position_parameters",
    "param_groups",
    "clamp_positions",
    "clamp_positions_after_step",
    "share_positions",
    "SigmaSchedule",
    "round_positions",
    "rounded_positions",
]


def dcls_layers(model: nn.Module) -> Iterator[_DclsBase]:
    """Every DCLS layer of ``model`` (``model`` itself included), each once."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    for module in model.modules():
        if isinstance(module, _DclsBase):
            yield module


def _unique(tensors: Iterable[torch.Tensor | None]) -> list[torch.Tensor]:
    seen, out = set(), []
    for t in tensors:
        if t is not None and id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def position_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The ``P`` and ``SIG`` parameters of every DCLS layer, shared ones once."""
    return _unique(t for layer in dcls_layers(model) for t in (layer.P, layer.SIG))


def param_groups(model: nn.Module, lr: float, weight_decay: float, position_lr_scale: float = 5.0) -> list[dict]:
    """Optimizer parameter groups with positions trained apart.

    Group ``"params"``: every other trainable parameter at ``lr`` and
    ``weight_decay``. Group ``"dcls_positions"``: the ``P`` and ``SIG`` of every DCLS
    layer at ``lr * position_lr_scale`` and no weight decay. Each group carries its
    ``lr_scale`` (timm's key) so a scheduler that sets ``lr`` itself can keep the
    ratio; torch's schedulers scale each group's initial ``lr`` and keep it anyway.
    Shared parameters appear once; frozen ones (``requires_grad=False``) are left out;
    empty groups are dropped.

    Args:
        model: the model.
        lr: base learning rate.
        weight_decay: weight decay of the non-position parameters.
        position_lr_scale: learning-rate factor of positions (5 in ConvNeXt-dcls and
            DCLS-Audio, 100 in the SNN delay recipes).

    Returns:
        A list of dicts for ``torch.optim.*(groups)``.

    Example:
        >>> model = nn.Sequential(learnable_ops.nn.Dcls2d(4, 4, 3, dilated_kernel_size=7, padding=3))
        >>> opt = torch.optim.AdamW(param_groups(model, lr=1e-3, weight_decay=0.05))
    """
    positions = {id(t) for t in position_parameters(model)}
    trainable = _unique(p for p in model.parameters() if p.requires_grad)
    rest = [p for p in trainable if id(p) not in positions]
    pos = [p for p in trainable if id(p) in positions]
    groups = [
        {"params": rest, "lr": lr, "weight_decay": weight_decay, "lr_scale": 1.0, "name": "params"},
        {
            "params": pos,
            "lr": lr * position_lr_scale,
            "weight_decay": 0.0,
            "lr_scale": position_lr_scale,
            "name": "dcls_positions",
        },
    ]
    return [g for g in groups if g["params"]]


@torch.no_grad()
def clamp_positions(model: nn.Module) -> None:
    """Clamps every DCLS layer's ``P[a]`` in place to ``[-floor(D_a/2), floor(D_a/2)]``.

    A ``P`` shared by layers of different ``dilated_kernel_size`` ends in the
    intersection of their ranges.
    """
    for layer in dcls_layers(model):
        layer.clamp_parameters()


def clamp_positions_after_step(
    optimizer: torch.optim.Optimizer, model: nn.Module
) -> torch.utils.hooks.RemovableHandle:
    """Runs :func:`clamp_positions` after every ``optimizer.step()`` (as ConvNeXt-dcls does).

    Returns:
        The hook's handle; ``handle.remove()`` uninstalls it.
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    list(dcls_layers(model))  # validates model now rather than at the first step

    def hook(opt, args, kwargs):
        clamp_positions(model)

    return optimizer.register_step_post_hook(hook)


def share_positions(layers: Iterable[_DclsBase], across_outputs: bool = False) -> nn.Parameter:
    """Makes ``layers`` share one ``P`` (and ``SIG``) parameter, the first layer's.

    ConvNeXt-dcls shares one position tensor per stage; DCLS-Audio one per
    channel count. With ``across_outputs=True`` the shared ``P`` is reduced to
    shape ``(n, 1, Ci/g, ..., Kc)`` (its first output channel): every output
    channel then uses the same positions, as the first DCLS generation did.

    Args:
        layers: DCLS layers with equal position shapes and equal ``version``
            family (all with ``SIG`` or all without).
        across_outputs: also share positions across output channels.

    Returns:
        The shared ``P``.
    """
    layers = list(layers)
    if not layers or not all(isinstance(layer, _DclsBase) for layer in layers):
        raise TypeError("layers must be a non-empty iterable of learnable_ops DCLS layers")
    first = layers[0]
    P, SIG = first.P, first.SIG
    if across_outputs:
        P = nn.Parameter(P.detach()[:, :1].clone())
        SIG = None if SIG is None else nn.Parameter(SIG.detach()[:, :1].clone())
    for layer in layers:
        if layer.P.shape[0] != P.shape[0] or layer.P.shape[2:] != P.shape[2:]:
            raise ValueError(
                f"layers must have equal position shapes to share them, got {tuple(layer.P.shape)} "
                f"and {tuple(first.P.shape)}"
            )
        if (layer.SIG is None) != (SIG is None):
            raise ValueError("layers must all have SIG ('gauss'/'max') or all have none to share positions")
        if not across_outputs and layer.P.shape[1] != P.shape[1]:
            raise ValueError(f"layers must have equal position shapes to share them, got {tuple(layer.P.shape)}")
        layer.P = P
        if SIG is not None:
            layer.SIG = SIG
    return P


class SigmaSchedule:
    """Sets every DCLS layer's ``SIG`` from ``start`` to ``floor`` over the first part of training.

    The SNN delay recipe: ``SIG = start * (floor / start) ** (t / T)`` (``kind='geometric'``)
    for ``t < T = fraction * total_steps``, then ``floor``. ``kind='linear'`` and
    ``'cosine'`` interpolate linearly and along a half cosine instead. The value is the
    raw ``SIG``: the Gaussian width is ``|SIG| + 0.27``, so ``floor=0.23`` ends at
    sigma 0.5 (the ``gauss`` initialisation). With ``freeze=True`` (the recipe's
    choice) ``SIG`` stops requiring grad, since the schedule overwrites it anyway.
    Call :meth:`step` once per step (or epoch, with ``total_steps`` in epochs).

    Args:
        model: a model with DCLS layers having ``SIG`` (``gauss`` or ``max``).
        total_steps: length of training in calls to :meth:`step`.
        start: initial ``SIG`` (the recipe uses half the maximal delay).
        floor: final ``SIG``.
        fraction: part of training over which ``SIG`` decays (the recipe's 1/4).
        kind: ``'geometric'``, ``'linear'`` or ``'cosine'``.
        freeze: set ``SIG.requires_grad_(False)``.

    Example:
        >>> schedule = SigmaSchedule(model, total_steps=100, start=12.0)
        >>> for epoch in range(100):
        ...     train_one_epoch(model)
        ...     schedule.step()
    """

    KINDS = ("geometric", "linear", "cosine")

    def __init__(
        self,
        model: nn.Module,
        total_steps: int,
        start: float,
        floor: float = 0.23,
        fraction: float = 0.25,
        kind: str = "geometric",
        freeze: bool = True,
    ) -> None:
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        if kind not in self.KINDS:
            raise ValueError(f"unknown kind {kind!r}; valid values are: {', '.join(self.KINDS)}")
        if kind == "geometric" and (start <= 0 or floor <= 0):
            raise ValueError(f"a geometric schedule needs start > 0 and floor > 0, got start={start}, floor={floor}")
        self.sigmas = _unique(layer.SIG for layer in dcls_layers(model))
        if not self.sigmas:
            raise ValueError("model has no DCLS layer with SIG (versions 'gauss' and 'max' have one)")
        self.total_steps, self.start, self.floor, self.fraction, self.kind = total_steps, start, floor, fraction, kind
        self.decay_steps = max(1, round(fraction * total_steps))
        self.last_step = 0
        if freeze:
            for sig in self.sigmas:
                sig.requires_grad_(False)
        self._apply(self.value(0))

    def value(self, step: int) -> float:
        """The ``SIG`` value at ``step``."""
        t = min(max(step, 0), self.decay_steps) / self.decay_steps
        if self.kind == "geometric":
            return self.start * (self.floor / self.start) ** t
        if self.kind == "linear":
            return self.start + (self.floor - self.start) * t
        return self.floor + (self.start - self.floor) * 0.5 * (1 + math.cos(math.pi * t))

    @torch.no_grad()
    def _apply(self, value: float) -> None:
        for sig in self.sigmas:
            sig.fill_(value)

    def step(self) -> float:
        """Advances one step and writes the new value into every ``SIG``; returns it."""
        self.last_step += 1
        value = self.value(self.last_step)
        self._apply(value)
        return value

    def state_dict(self) -> dict:
        return {"last_step": self.last_step}

    def load_state_dict(self, state: dict) -> None:
        self.last_step = int(state["last_step"])
        self._apply(self.value(self.last_step))


@torch.no_grad()
def round_positions(model: nn.Module, version: str = "v1") -> None:
    """Rounds every position to an integer, clamps it, and switches the layers to ``version``.

    With the triangle versions (``'v1'``, or ``'max'`` with ``SIG = 0``) an integer
    position puts all of a tap's weight in one cell: integer delays, as the SNN
    delay recipe evaluates. Permanent; see :func:`rounded_positions` for a
    temporary switch.
    """
    version = normalize_dcls_version(version)
    layers = list(dcls_layers(model))
    for P in _unique(layer.P for layer in layers):
        P.round_()
    for layer in layers:
        layer.clamp_parameters()
        layer.version = version
        if version == "max" and layer.SIG is not None:
            layer.SIG.zero_()


@contextlib.contextmanager
def rounded_positions(model: nn.Module, version: str = "v1"):
    """Context manager: :func:`round_positions` inside, everything restored on exit.

    Example:
        >>> with rounded_positions(model):
        ...     accuracy = evaluate(model)
    """
    layers = list(dcls_layers(model))
    saved = {id(t): (t, t.detach().clone()) for t in _unique(x for layer in layers for x in (layer.P, layer.SIG))}
    versions = [(layer, layer.version) for layer in layers]
    try:
        round_positions(model, version)
        yield model
    finally:
        with torch.no_grad():
            for t, value in saved.values():
                t.copy_(value)
        for layer, v in versions:
            layer.version = v
