"""Eager autograd entered directly, with the formulas registered through ``torch.library``.

``torch.library.register_autograd`` routes every differentiable call through the dispatcher's
Autograd key into a Python kernel, which builds an ``autograd.Function``, refills default
arguments and redispatches; the backward ops go through the same machinery again. For ops whose
GPU work is tens of microseconds that host time is most of a training step.

:func:`direct_autograd` builds an ``autograd.Function`` around an op from the *same*
``setup_context`` and ``backward`` functions that are registered for it, and runs the op (and,
outside ``create_graph``, the backward's ops) below the Autograd key. The public functional
wrappers take it in eager mode when a gradient is needed (:func:`wants_direct_autograd`); raw
``torch.ops`` calls, ``torch.compile`` and ``torch.jit`` keep the registered autograd.
With ``create_graph=True`` the backward runs through the dispatcher, so higher derivatives are
exactly the registered ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


def wants_direct_autograd(*tensors: torch.Tensor | None) -> bool:
    """Whether an eager call needs a graph: grad mode on, some input requiring grad, not tracing."""
    if not torch.is_grad_enabled():
        return False
    if not any(t is not None and t.requires_grad for t in tensors):
        return False
    return not (torch.compiler.is_compiling() or torch.jit.is_tracing())


def backward_below_autograd(backward: Callable) -> Callable:
    """Wraps a backward formula so that its ops run below the Autograd key unless
    ``create_graph=True`` asks for a graph (then they go through the dispatcher and stay
    differentiable). Without grad mode nothing would be recorded anyway; this only skips the
    backward ops' own Python autograd kernels."""

    @functools.wraps(backward)
    def run(ctx, *grads):
        if torch.is_grad_enabled():
            return backward(ctx, *grads)
        with torch._C._AutoDispatchBelowAutograd():
            return backward(ctx, *grads)

    return run


def direct_autograd(op, setup_context: Callable, backward: Callable) -> type[torch.autograd.Function]:
    """An ``autograd.Function`` computing ``op`` with the given registered formulas."""
    run_backward = backward_below_autograd(backward)

    class DirectAutograd(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            with torch._C._AutoDispatchBelowAutograd():
                out = op(*args)
            setup_context(ctx, args, out)
            return out

        backward = staticmethod(run_backward)

    DirectAutograd.__name__ = DirectAutograd.__qualname__ = f"Direct_{op.name().replace('::', '_')}"
    return DirectAutograd
