"""Argument validation shared by the functional wrappers.

Errors are raised before a kernel runs and name the offending argument:
``TypeError`` for a wrong type or dtype, ``ValueError`` for a wrong value or shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_tensor(x, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def check_floating(x: torch.Tensor, name: str) -> None:
    check_tensor(x, name)
    if not x.dtype.is_floating_point:
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got {x.dtype}"
        )


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast runs convolutions in on ``device_type``, or None outside autocast and on
    device types autocast does not know (``meta``: ``torch.is_autocast_enabled`` raises there)."""
    # torch.amp.is_autocast_available is not traceable by dynamo (torch 2.11); compiled graphs
    # run on real devices, where autocast is known.
    if not torch.compiler.is_compiling() and not torch.amp.is_autocast_available(device_type):
        return None
    if not torch.is_autocast_enabled(device_type):
        return None
    return torch.get_autocast_dtype(device_type)


def strictly_channels_last(t: torch.Tensor) -> bool:
    """Whether a 4D tensor is laid out channels_last and not also NCHW-contiguous (the C++
    ``strictly_channels_last`` of cpp/include/learnable_ops/checks.h)."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def check_rank(x: torch.Tensor, name: str, ranks: Sequence[int], what: str) -> None:
    if x.dim() not in ranks:
        raise ValueError(f"{name} must be {what}, got a tensor of shape {tuple(x.shape)}")


def check_same_device(*named: tuple[str, torch.Tensor | None]) -> None:
    present = [(n, t) for n, t in named if t is not None]
    if not present:
        return
    first_name, first = present[0]
    for name, t in present[1:]:
        if t.device != first.device:
            raise ValueError(
                f"{first_name} and {name} must be on the same device, got {first.device} and {t.device}"
            )


def int_tuple(value, name: str, length: int | None = None) -> tuple[int, ...]:
    """An int or a sequence of ints, expanded to ``length`` entries."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a sequence of ints, got bool")
    if isinstance(value, int):
        if length is None:
            return (value,)
        return (value,) * length
    if isinstance(value, torch.SymInt):
        return (value,) * (length or 1)
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {type(value).__name__}")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, torch.SymInt)):
            raise TypeError(f"{name} must contain only ints, got {v!r}")
        out.append(v)
    if length is not None and len(out) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(out)}")
    return tuple(out)


def choice(value, name: str, valid: Sequence[str], aliases: dict[str, str] | None = None) -> str:
    """A string option; the message lists the valid values."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {', '.join(valid)}; got {type(value).__name__}")
    if aliases and value in aliases:
        value = aliases[value]
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid values are: {', '.join(valid)}")
    return value
