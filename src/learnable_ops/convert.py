"""Model surgery: swap the convolutions of any model for learnable_ops layers in one call.

:func:`convert` walks a model recursively (in the style of timm's
``convert_sync_batchnorm`` and torchao's filter/replace), asks ``filter_fn``
which convolutions to replace, builds each replacement with the target's
``from_conv`` and keeps what the old module carried: device, dtype, training
mode, ``requires_grad``, ``qconfig`` and hooks. It returns a
:class:`ConversionReport` that lists every replaced module and every skipped
convolution with the reason, and prints as a table.

Only exact ``nn.Conv1d``/``nn.Conv2d``/``nn.Conv3d`` match by default: subclasses
such as timm's ``Conv2dSame`` change the padding semantics, so the ready
predicates reject them and say so in the report. A custom ``filter_fn`` may
still select one on purpose.
"""

from __future__ import annotations

import copy
import fnmatch
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = [
    "TARGETS",
    "ConvFilter",
    "ConversionReport",
    "ReplacedModule",
    "SkippedModule",
    "any_conv_with_kernel_gt1",
    "by_name",
    "convert",
    "is_depthwise",
]

_CONV_TYPES = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
SHARE_POSITIONS = (None, "by_channels")


# ----------------------------------------------------------------------------- filters


def _conv_dim(module: nn.Module) -> int | None:
    """Spatial dims of an exact Conv1d/2d/3d, else None."""
    return _CONV_TYPES.get(type(module))


def _not_exact_conv(module: nn.Module) -> str | None:
    """Why ``module`` is not an exact Conv1d/2d/3d (None if it is one)."""
    if _conv_dim(module) is not None:
        return None
    for base in _CONV_TYPES:
        if isinstance(module, base):
            return (
                f"{type(module).__name__} subclasses {base.__name__}; only exact types match by default "
                "because subclasses may change the padding semantics"
            )
    return f"{type(module).__name__} is not a Conv1d/Conv2d/Conv3d"


class ConvFilter:
    """A ``filter_fn(module, fqn) -> bool`` that can also say why it rejects a module.

    Instances combine with ``&`` and ``|``. :func:`convert` puts the reason
    returned by :meth:`why_not` into the report's list of skipped convolutions.

    Args:
        why_not: ``(module, fqn) -> str | None``: the reason to reject, or None to accept.
        name: how the filter prints.
    """

    def __init__(self, why_not: Callable[[nn.Module, str], str | None], name: str):
        self._why_not = why_not
        self.name = name

    def why_not(self, module: nn.Module, fqn: str = "") -> str | None:
        """The reason this filter rejects ``module`` at ``fqn``, or None if it accepts it."""
        return self._why_not(module, fqn)

    def __call__(self, module: nn.Module, fqn: str = "") -> bool:
        return self._why_not(module, fqn) is None

    def __and__(self, other: ConvFilter) -> ConvFilter:
        return ConvFilter(lambda m, n: self.why_not(m, n) or other.why_not(m, n), f"({self.name} & {other.name})")

    def __or__(self, other: ConvFilter) -> ConvFilter:
        def why_not(m, n):
            first = self.why_not(m, n)
            if first is None:
                return None
            second = other.why_not(m, n)
            return None if second is None else f"{first}; and {second}"

        return ConvFilter(why_not, f"({self.name} | {other.name})")

    def __repr__(self) -> str:
        return f"ConvFilter({self.name})"


def _depthwise_why_not(module: nn.Module, fqn: str) -> str | None:
    reason = _not_exact_conv(module)
    if reason:
        return reason
    if module.groups != module.in_channels or module.out_channels % module.in_channels:
        return (
            f"not depthwise (in_channels={module.in_channels}, out_channels={module.out_channels}, "
            f"groups={module.groups})"
        )
    return None


def _kernel_gt1_why_not(module: nn.Module, fqn: str) -> str | None:
    reason = _not_exact_conv(module)
    if reason:
        return reason
    if all(k == 1 for k in module.kernel_size):
        return f"kernel size {tuple(module.kernel_size)} is pointwise"
    return None


is_depthwise = ConvFilter(_depthwise_why_not, "is_depthwise")
"""Selects exact Conv1d/2d/3d with ``groups == in_channels`` and
``out_channels % in_channels == 0`` (depthwise, any channel multiplier).
The default ``filter_fn`` of :func:`convert`."""

any_conv_with_kernel_gt1 = ConvFilter(_kernel_gt1_why_not, "any_conv_with_kernel_gt1")
"""Selects every exact Conv1d/2d/3d whose kernel is larger than 1 along some
axis (dense, grouped or depthwise); the natural filter for ``to='diffconv'``."""


def by_name(pattern: str | re.Pattern) -> ConvFilter:
    """Selects exact Conv1d/2d/3d whose fully qualified name matches ``pattern``.

    Args:
        pattern: a shell-style pattern matched against the whole name with
            :func:`fnmatch.fnmatchcase` (``'stages.*.blocks.*.conv_dw'``), or a
            compiled regular expression, searched with ``pattern.search(fqn)``.

    Returns:
        A :class:`ConvFilter`; combine it with ``&`` (``is_depthwise & by_name('stages.3.*')``).
    """
    if isinstance(pattern, re.Pattern):
        matches = lambda fqn: pattern.search(fqn) is not None  # noqa: E731
        shown = pattern.pattern
    elif isinstance(pattern, str):
        matches = lambda fqn: fnmatch.fnmatchcase(fqn, pattern)  # noqa: E731
        shown = pattern
    else:
        raise TypeError(f"pattern must be a str or a compiled re.Pattern, got {type(pattern).__name__}")

    def why_not(module, fqn):
        reason = _not_exact_conv(module)
        if reason:
            return reason
        return None if matches(fqn) else f"name does not match {shown!r}"

    return ConvFilter(why_not, f"by_name({shown!r})")


# ----------------------------------------------------------------------------- targets


def _nn():
    from learnable_ops import nn as lo_nn

    return lo_nn


def _same_shape_padding(conv: nn.Module, dilated_kernel_size: tuple[int, ...]) -> tuple[int, ...]:
    """Padding that gives a conv of kernel extent ``dilated_kernel_size`` the output shape of ``conv``."""
    if isinstance(conv.padding, str):
        padding = (
            (0,) * len(conv.kernel_size)
            if conv.padding == "valid"
            else tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation))
        )
    else:
        padding = tuple(conv.padding)
    result = []
    for p, k, d, size in zip(padding, conv.kernel_size, conv.dilation, dilated_kernel_size):
        grow = (size - 1) - d * (k - 1)
        if grow % 2 or p + grow // 2 < 0:
            raise ValueError(
                f"dilated_kernel_size={tuple(dilated_kernel_size)} cannot keep the output shape of "
                f"{type(conv).__name__}(kernel_size={tuple(conv.kernel_size)}, dilation={tuple(conv.dilation)}, "
                f"padding={conv.padding}): dilated_kernel_size - 1 - dilation * (kernel_size - 1) must be even and "
                "at least -2 * padding"
            )
        result.append(p + grow // 2)
    return tuple(result)


def _build_dcls(conv, fqn, *, kernel_count=None, dilated_kernel_size=None, version=None, **kwargs):
    cls = getattr(_nn(), f"Dcls{_conv_dim(conv) or len(conv.kernel_size)}d")
    if kernel_count is None:
        if version is not None:
            kwargs["version"] = version
        return cls.from_conv(conv, dilated_kernel_size=dilated_kernel_size, **kwargs)
    if dilated_kernel_size is None:
        raise ValueError(
            "kernel_count needs dilated_kernel_size: the DCLS recipe initialisation places kernel_count taps "
            "in a grid of dilated_kernel_size"
        )
    ndim = len(conv.kernel_size)
    if isinstance(dilated_kernel_size, int):
        dilated_kernel_size = (dilated_kernel_size,) * ndim
    dilated_kernel_size = tuple(dilated_kernel_size)
    if version is not None:
        kwargs["version"] = version
    return cls(
        conv.in_channels,
        conv.out_channels,
        kernel_count,
        stride=tuple(conv.stride),
        padding=_same_shape_padding(conv, dilated_kernel_size),
        dilated_kernel_size=dilated_kernel_size,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
        **kwargs,
    )


def _build_shift(conv, fqn, **kwargs):
    return getattr(_nn(), f"Shift{_conv_dim(conv) or len(conv.kernel_size)}d").from_conv(conv, **kwargs)


def _build_diffconv(conv, fqn, **kwargs):
    return _nn().DiffConv2d.from_conv(conv, **kwargs)


def _shift_why_not(conv) -> str | None:
    if conv.out_channels != conv.in_channels:
        return (
            f"a shift keeps the channel count, but this conv maps {conv.in_channels} -> "
            f"{conv.out_channels} channels"
        )
    if conv.groups != conv.in_channels:
        return f"a shift replaces depthwise convs only (groups == in_channels), got groups={conv.groups}"
    return None


def _diffconv_why_not(conv) -> str | None:
    if any(k % 2 == 0 for k in conv.kernel_size):
        return f"DiffConv2d needs odd kernel sizes, got {tuple(conv.kernel_size)}"
    same = tuple(d * (k - 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation))
    if conv.padding != "same" and tuple(conv.padding) != same:
        return (
            f"DiffConv2d is padding-free and keeps the input size; this conv has padding={conv.padding}, "
            f"not the size-keeping {same}"
        )
    return None


@dataclass(frozen=True)
class _Target:
    name: str
    dims: tuple[int, ...]
    layer_names: tuple[str, ...]
    build: Callable
    why_not: Callable[[nn.Module], str | None] = lambda conv: None

    def layer_types(self) -> tuple[type, ...]:
        lo_nn = _nn()
        return tuple(getattr(lo_nn, n) for n in self.layer_names if hasattr(lo_nn, n))


TARGETS: dict[str, _Target] = {
    "dcls": _Target("dcls", (1, 2, 3), ("Dcls1d", "Dcls2d", "Dcls3d"), _build_dcls),
    "shift": _Target("shift", (1, 2, 3), ("Shift1d", "Shift2d", "Shift3d"), _build_shift, _shift_why_not),
    "diffconv": _Target("diffconv", (2,), ("DiffConv2d",), _build_diffconv, _diffconv_why_not),
}
"""The named targets of :func:`convert` and the spatial dims each supports."""


# ----------------------------------------------------------------------------- report


def _count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class ReplacedModule:
    """One replaced module: where, from what, to what, and the parameter counts."""

    fqn: str
    old_type: str
    new_type: str
    old_parameters: int
    new_parameters: int
    also_at: list[str] = field(default_factory=list)
    """Further names of the same module object (a module shared by several parents is replaced once)."""


@dataclass
class SkippedModule:
    """A convolution left in place, and why."""

    fqn: str
    type: str
    reason: str


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


@dataclass
class ConversionReport:
    """What :func:`convert` did. ``print(report)`` shows it as a table.

    Attributes:
        model: the converted model (the input model itself when ``inplace=True``,
            unless the model was itself a matching conv and had to be replaced).
        target: the target name, or the callable's name.
        replaced: every replaced module, in walk order.
        skipped: every convolution left in place, with the reason.
        notes: anything else worth knowing (already-converted layers, position sharing, hooks).
    """

    model: nn.Module
    target: str
    replaced: list[ReplacedModule] = field(default_factory=list)
    skipped: list[SkippedModule] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def num_replaced(self) -> int:
        """Number of distinct modules replaced (a shared module counts once)."""
        return len(self.replaced)

    @property
    def parameters_before(self) -> int:
        return sum(r.old_parameters for r in self.replaced)

    @property
    def parameters_after(self) -> int:
        return sum(r.new_parameters for r in self.replaced)

    def __str__(self) -> str:
        lines = [f"convert(to={self.target!r}): replaced {self.num_replaced}, skipped {len(self.skipped)} convolutions"]
        if self.replaced:
            rows = [
                (
                    r.fqn + (f" (also {', '.join(r.also_at)})" if r.also_at else ""),
                    r.old_type,
                    r.new_type,
                    f"{r.old_parameters:,}",
                    f"{r.new_parameters:,}",
                )
                for r in self.replaced
            ]
            rows.append(("total", "", "", f"{self.parameters_before:,}", f"{self.parameters_after:,}"))
            lines += ["", *_table(("module", "old type", "new type", "params before", "params after"), rows)]
        if self.skipped:
            rows = [(s.fqn, s.type, s.reason) for s in self.skipped]
            lines += ["", "skipped:", *_table(("module", "type", "reason"), rows)]
        if self.notes:
            lines += ["", "notes:", *(f"- {n}" for n in self.notes)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"ConversionReport(target={self.target!r}, replaced={self.num_replaced}, skipped={len(self.skipped)}, "
            f"notes={len(self.notes)})"
        )


# ----------------------------------------------------------------------------- carrying state over

_HOOK_DICTS = (
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_backward_pre_hooks",
    "_backward_hooks",
)
_STATE_DICT_HOOK_DICTS = (
    "_state_dict_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def _parameter_bound_hook(hook, old: nn.Module) -> str | None:
    """Why a hook cannot move to another module (None if it can)."""
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    if isinstance(hook, (WeightNorm, SpectralNorm)):
        return f"{type(hook).__name__} recomputes the old module's 'weight' parameter"
    if getattr(hook, "__self__", None) is old:
        return "it is a method of the replaced module"
    return None


def _keep_hooks(old: nn.Module, new: nn.Module, fqn: str, report: ConversionReport) -> None:
    """Moves forward/backward hooks to ``new``; the user's handles keep working because
    the hook dictionaries themselves move (a handle refers to the dictionary)."""
    dropped = []
    forward_hooks = [*old._forward_pre_hooks.items(), *old._forward_hooks.items()]
    for key, hook in forward_hooks:
        reason = _parameter_bound_hook(hook, old)
        if reason:
            dropped.append((key, hook, reason))
    for key, hook, reason in dropped:
        old._forward_pre_hooks.pop(key, None)
        old._forward_hooks.pop(key, None)
        old._forward_pre_hooks_with_kwargs.pop(key, None)
        old._forward_hooks_with_kwargs.pop(key, None)
        old._forward_hooks_always_called.pop(key, None)
        message = f"{fqn}: dropped hook {getattr(hook, '__name__', type(hook).__name__)}: {reason}"
        warnings.warn(f"learnable_ops.convert: {message}", stacklevel=4)
        report.notes.append(message)
    for name in _HOOK_DICTS:
        kept = getattr(old, name)
        kept.update(getattr(new, name))
        setattr(new, name, kept)
    if old._backward_hooks:
        new._is_full_backward_hook = old._is_full_backward_hook
    for name in _STATE_DICT_HOOK_DICTS:
        for hook in getattr(old, name).values():
            message = (
                f"{fqn}: dropped {name.strip('_').replace('_', ' ')[:-1]} "
                f"{getattr(hook, '__name__', type(hook).__name__)}: state_dict hooks depend on parameter names, "
                "which change"
            )
            warnings.warn(f"learnable_ops.convert: {message}", stacklevel=4)
            report.notes.append(message)


def _carry_over(old: nn.Module, new: nn.Module, fqn: str, report: ConversionReport) -> None:
    """Gives ``new`` the device, dtype, training mode, requires_grad, qconfig and hooks of ``old``."""
    reference = next(iter(old.parameters()), None)
    if reference is None:
        reference = next(iter(old.buffers()), None)
    if reference is not None:
        if reference.is_floating_point():
            new.to(device=reference.device, dtype=reference.dtype)
        else:
            new.to(device=reference.device)
    new.train(old.training)
    old_params = dict(old.named_parameters())
    frozen_default = reference is not None and isinstance(reference, nn.Parameter) and not reference.requires_grad
    for name, p in new.named_parameters():
        wanted = old_params[name].requires_grad if name in old_params else not frozen_default
        p.requires_grad_(wanted)
    if hasattr(old, "qconfig"):
        new.qconfig = old.qconfig
    _keep_hooks(old, new, fqn, report)


# ----------------------------------------------------------------------------- convert


def _is_learnable_ops_layer(module: nn.Module) -> bool:
    return type(module).__module__.startswith("learnable_ops.nn")


def _share_positions(report: ConversionReport, layers: list[nn.Module]) -> None:
    """Makes layers of equal position shape (equal channel counts, taps and grid) share one P and SIG."""
    groups: dict[tuple, list[nn.Module]] = {}
    for layer in layers:
        sig = getattr(layer, "SIG", None)
        key = (
            type(layer),
            tuple(layer.P.shape),
            None if sig is None else tuple(sig.shape),
            tuple(layer.dilated_kernel_size),
            getattr(layer, "version", None),
            layer.P.device,
            layer.P.dtype,
        )
        groups.setdefault(key, []).append(layer)
    sizes = []
    for members in groups.values():
        first = members[0]
        for layer in members[1:]:
            layer.P = first.P
            if getattr(first, "SIG", None) is not None:
                layer.SIG = first.SIG
        sizes.append(len(members))
    report.notes.append(
        f"share_positions='by_channels': {len(groups)} position group(s), shared by {', '.join(map(str, sizes))} layer(s)"
    )


def convert(
    model: nn.Module,
    to: str | Callable[[nn.Module, str], nn.Module],
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    inplace: bool = True,
    **layer_kwargs: Any,
) -> ConversionReport:
    """Replaces the convolutions of ``model`` selected by ``filter_fn`` with learnable_ops layers.

    The walk is recursive and visits each module object once: a module shared by
    several parents is replaced by one new module everywhere. Each replacement
    keeps the old module's device, dtype, training mode, ``requires_grad``,
    ``qconfig`` and forward/backward hooks (the user's hook handles still
    work); a hook that cannot move (weight norm, spectral norm, a method of the
    old module, state_dict hooks) is dropped with a warning and a note.

    Targets and their initialisation:

    * ``'dcls'``: ``DclsNd.from_conv(conv, dilated_kernel_size, version)``, taps on
      the conv's grid and weights copied (equal outputs for v0/v1). With
      ``kernel_count`` and ``dilated_kernel_size`` both given, the DCLS recipe
      initialisation instead: a fresh ``DclsNd(in, out, kernel_count, ...)`` padded
      to keep the conv's output shape. ``share_positions='by_channels'`` then
      makes layers of equal channel count share one ``P`` (and ``SIG``), as the
      ConvNeXt-dcls and DCLS-audio recipes do.
    * ``'shift'``: ``ShiftNd.from_conv(conv)``, reproducing the conv's output shape.
    * ``'diffconv'``: ``DiffConv2d.from_conv(conv)``, the same weights (2D only).
    * a callable ``(module, fqn) -> nn.Module``: builds any replacement. With a
      callable, a custom ``filter_fn`` may select any module, not only convolutions.

    Args:
        model: the model to convert.
        to: ``'dcls'``, ``'shift'``, ``'diffconv'`` or a callable ``(module, fqn) -> nn.Module``.
        filter_fn: ``(module, fqn) -> bool`` selecting the modules to replace.
            Default :data:`is_depthwise`; see also :data:`any_conv_with_kernel_gt1`
            and :func:`by_name`. With a named target it must select only
            convolutions.
        inplace: modify ``model`` (True) or convert a deep copy (False).
        **layer_kwargs: passed to the target's ``from_conv`` (or constructor), e.g.
            ``version='gauss'``, ``dilated_kernel_size=17``, ``kernel_count=34``,
            ``mode='active'``; ``share_positions`` for ``'dcls'``.

    Returns:
        A :class:`ConversionReport`; the converted model is ``report.model``.

    Raises:
        ValueError: an unknown target (the message lists the valid ones), a
            ``filter_fn`` that selects a non-convolution with a named target, or
            an invalid ``share_positions``.
        TypeError: ``model`` is not an ``nn.Module``, or ``to``/``filter_fn`` are of the wrong type.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    valid = ", ".join(repr(n) for n in TARGETS)
    if isinstance(to, str):
        if to not in TARGETS:
            raise ValueError(f"unknown target to={to!r}; valid targets are {valid} or a callable (module, fqn) -> nn.Module")
        target = TARGETS[to]
        target_name = to
    elif callable(to) and not isinstance(to, nn.Module):
        target = None
        target_name = getattr(to, "__name__", type(to).__name__)
    else:
        raise TypeError(f"to must be one of {valid} or a callable (module, fqn) -> nn.Module, got {type(to).__name__}")
    if filter_fn is not None and not callable(filter_fn):
        raise TypeError(f"filter_fn must be a callable (module, fqn) -> bool, got {type(filter_fn).__name__}")
    share_positions = layer_kwargs.pop("share_positions", None)
    if share_positions not in SHARE_POSITIONS:
        raise ValueError(f"share_positions must be None or 'by_channels', got {share_positions!r}")
    if share_positions is not None and to != "dcls":
        raise ValueError(f"share_positions applies to to='dcls' only, got to={target_name!r}")
    if target is None and layer_kwargs:
        raise TypeError(
            f"layer keyword arguments {sorted(layer_kwargs)} apply to named targets only; "
            "a callable target builds its replacement itself"
        )

    if not inplace:
        model = copy.deepcopy(model)
    report = ConversionReport(model=model, target=target_name)
    custom_filter = filter_fn is not None
    select = filter_fn if custom_filter else is_depthwise
    target_types = target.layer_types() if target is not None else ()
    already = []
    new_layers = []
    replaced_by_id: dict[int, tuple[nn.Module, ReplacedModule]] = {}
    visited: set[int] = set()

    def replacement_for(module: nn.Module, fqn: str) -> nn.Module | None:
        """The new module for ``module`` (None to keep it), recording skips in the report."""
        is_conv = isinstance(module, nn.modules.conv._ConvNd)
        if not custom_filter and not is_conv:
            return None
        if not select(module, fqn):
            if is_conv:
                reason = select.why_not(module, fqn) if isinstance(select, ConvFilter) else "filter_fn returned False"
                report.skipped.append(SkippedModule(fqn, type(module).__name__, reason))
            return None
        if target is None:
            new = to(module, fqn)
            if not isinstance(new, nn.Module):
                raise TypeError(f"the target callable returned {type(new).__name__} for {fqn!r}, not an nn.Module")
            if new is module:
                report.notes.append(f"{fqn}: the target callable returned the module unchanged")
                return None
            return new
        if not isinstance(module, tuple(_CONV_TYPES)):
            raise ValueError(
                f"filter_fn selected {fqn or '<root>'!r} ({type(module).__name__}), which is not a "
                f"Conv1d/Conv2d/Conv3d; to={target_name!r} replaces convolutions only. Make filter_fn return True "
                "for convolutions only, e.g. with learnable_ops.convert.by_name(pattern) or by testing "
                "isinstance(module, nn.Conv2d)"
            )
        dim = len(module.kernel_size)
        if dim not in target.dims:
            report.skipped.append(
                SkippedModule(fqn, type(module).__name__, f"to={target_name!r} supports {target.dims}-D convolutions only")
            )
            return None
        reason = target.why_not(module)
        if reason:
            report.skipped.append(SkippedModule(fqn, type(module).__name__, reason))
            return None
        if _conv_dim(module) is None:
            message = f"{fqn}: converted the subclass {type(module).__name__} as selected by filter_fn; its own padding semantics are not kept"
            warnings.warn(f"learnable_ops.convert: {message}", stacklevel=3)
            report.notes.append(message)
        return target.build(module, fqn, **layer_kwargs)

    def record(old: nn.Module, new: nn.Module, fqn: str) -> None:
        _carry_over(old, new, fqn, report)
        entry = ReplacedModule(
            fqn, type(old).__name__, type(new).__name__, _count_parameters(old), _count_parameters(new)
        )
        report.replaced.append(entry)
        replaced_by_id[id(old)] = (new, entry)
        if target_types and isinstance(new, target_types):
            new_layers.append(new)

    def walk(parent: nn.Module, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            fqn = f"{prefix}.{name}" if prefix else name
            if id(child) in replaced_by_id:
                new, entry = replaced_by_id[id(child)]
                setattr(parent, name, new)
                entry.also_at.append(fqn)
                continue
            if id(child) in visited:
                continue
            visited.add(id(child))
            if target_types and isinstance(child, target_types):
                already.append(type(child).__name__)
                continue
            if _is_learnable_ops_layer(child):
                continue
            new = replacement_for(child, fqn)
            if new is not None:
                record(child, new, fqn)
                setattr(parent, name, new)
            else:
                walk(child, fqn)

    if target_types and isinstance(model, target_types):
        already.append(type(model).__name__)
    elif not _is_learnable_ops_layer(model):
        root = replacement_for(model, "")
        if root is not None:
            record(model, root, "<root>")
            report.model = root
        else:
            visited.add(id(model))
            walk(model, "")

    if already:
        kind = "/".join(sorted(set(already)))
        if report.replaced:
            report.notes.append(f"{len(already)} layer(s) were already {kind} and were left as they are")
        else:
            report.notes.append(
                f"the model is already converted to {target_name!r} ({len(already)} {kind} layer(s)); nothing to do"
            )
    if share_positions == "by_channels" and new_layers:
        _share_positions(report, new_layers)
    return report
