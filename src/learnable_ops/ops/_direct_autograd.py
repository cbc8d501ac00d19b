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

Forward mode. ``torch.library`` has no forward-mode registration, and the Autograd kernel that
``register_autograd`` builds looks at ``requires_grad`` only: a dual tensor
(``forward_ad.make_dual``, ``torch.func.jvp``, ``torch.func.jacfwd``) went through every op and
came out without a tangent, silently. :func:`register_autograd` registers such a kernel plus
the op's forward-mode rule (``jvp``), applied to calls whose arguments carry a tangent; an op
without one, or a tangent of an argument it does not cover, raises ``NotImplementedError``
naming the op and the argument. The eager wrappers leave such calls to the dispatcher
(:func:`wants_direct_autograd`).

``torch.func``. ``torch.func.grad``, ``vjp``, ``jacrev`` and ``hessian`` refuse the kernel that
``torch.library.register_autograd`` builds, for every op ("it must override the setup_context
staticmethod"): it applies an old-style ``autograd.Function``, which functorch diverts to
``custom_function_call``. :func:`register_autograd` registers its own kernel instead
(:func:`_autograd_kernel`): the same Function, with the registered ``setup_context`` and backward,
applied past that diversion so that it records on the transform level whose Autograd key is
running, as a built-in op's autograd kernel does. Nested (``grad`` of ``grad``, ``vmap`` of
``grad``, ``hessian``) or compiled (``torch.compile`` of a ``torch.func.grad``), the transforms
give what eager autograd gives, and a second derivative raises where an op has none, as in eager
mode. Inside a transform the eager wrappers take the dispatcher (:func:`wants_direct_autograd`),
so that the calls reach this kernel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.autograd.forward_ad as forward_ad
from torch._functorch.utils import enable_single_level_autograd_function
from torch._library.utils import fill_defaults, is_tensorlist_like_type, lookup_op


def has_forward_tangent(*tensors: torch.Tensor | None) -> bool:
    """Whether some tensor carries a forward-mode tangent. Tangents exist only inside a dual
    level (``torch.func.jvp`` and ``jacfwd`` open one too); outside, this reads one global."""
    if forward_ad._current_level < 0:
        return False
    return any(t is not None and forward_ad.unpack_dual(t).tangent is not None for t in tensors)


def _traced_or_transformed() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._are_functorch_transforms_active()


def wants_direct_autograd(*tensors: torch.Tensor | None) -> bool:
    """Whether an eager call needs a graph: grad mode on, some input requiring grad, not tracing,
    outside ``torch.func`` transforms, and no forward-mode tangent (the registered kernel carries
    tangents)."""
    if not torch.is_grad_enabled():
        return False
    if not any(t is not None and t.requires_grad for t in tensors):
        return False
    return not (_traced_or_transformed() or has_forward_tangent(*tensors))


def skips_autograd(*tensors: torch.Tensor | None) -> bool:
    """Whether an eager call may run below the Autograd key: no graph to record (grad mode off or
    no input requiring grad), no forward-mode tangent, not tracing, outside ``torch.func``."""
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors):
        return False
    return not (_traced_or_transformed() or has_forward_tangent(*tensors))


def backward_below_autograd(backward: Callable) -> Callable:
    """Wraps a backward formula so that its ops run below the Autograd key unless
    ``create_graph=True`` asks for a graph or a dual level is open (then they go through the
    dispatcher: they stay differentiable, and carry the tangents of forward over reverse).
    Otherwise nothing would be recorded anyway; this only skips the backward ops' own Python
    autograd kernels."""

    @functools.wraps(backward)
    def run(ctx, *grads):
        if torch.is_grad_enabled() or forward_ad._current_level >= 0:
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


class _Redispatch:
    """The dispatch key set of a call, passed to the ``autograd.Function`` as its last argument
    (not a tensor, so autograd gives it no gradient)."""

    __slots__ = ("keyset",)

    def __init__(self, keyset: torch._C.DispatchKeySet):
        self.keyset = keyset


def _autograd_kernel(op, backward: Callable, setup_context: Callable) -> Callable:
    """The Autograd kernel of ``op`` (called with its dispatch key set): the one ``torch.library``
    builds (``torch._library.autograd.make_autograd_impl``), made to work under ``torch.func``.

    Torch's kernel applies an old-style ``autograd.Function`` (``forward(ctx, ...)``); under a
    functorch transform ``Function.apply`` diverts to ``custom_function_call``, which refuses such
    a Function (and could not be entered from inside the Autograd key anyway). Here, under a
    transform, the Function is applied through ``torch._C._FunctionBase.apply`` with single-level
    Functions allowed: it records on the level whose Autograd key is running, where the arguments
    are already unwrapped, as an op's generated autograd kernel does; the levels below see the
    redispatched call, and must see grad and forward-grad mode on, as around any other op's
    kernels: otherwise they record nothing, and ``grad(grad(f))`` or ``hessian`` answer zeros,
    silently. ``apply`` runs ``forward`` with both off, and :func:`register_autograd`'s forward-mode
    wrapper calls this kernel with forward grad off (so that ``apply`` looks for no forward
    formula): under a transform they are switched on again around the redispatch, with a graph
    or without (without, ``jacfwd(jacfwd(f))`` lost the outer level's tangents). Outside the
    transforms this is torch's kernel; the check costs one C call.
    """
    after_autograd = torch._C._after_autograd_keyset

    def forward(ctx, *args):
        *args, redispatch = args
        if torch._C._are_functorch_transforms_active():
            with torch.enable_grad(), forward_ad._set_fwd_grad_enabled(True), torch._C._AutoDispatchBelowAutograd():
                output = op.redispatch(redispatch.keyset & after_autograd, *args)
        else:
            with torch._C._AutoDispatchBelowAutograd():
                output = op.redispatch(redispatch.keyset & after_autograd, *args)
        # The dispatcher drops arguments equal to their defaults; setup_context sees them all.
        inputs, _ = fill_defaults(op._schema, tuple(args), {})
        setup_context(ctx=ctx, inputs=inputs, output=output)
        return output

    def backward_with_keyset(ctx, *grads):
        # The formulas index needs_input_grad by argument: hide the key set's entry.
        needs_input_grad = ctx.needs_input_grad
        ctx.needs_input_grad = needs_input_grad[:-1]
        try:
            result = backward(ctx, *grads)
        finally:
            ctx.needs_input_grad = needs_input_grad
        return (*result, None) if isinstance(result, tuple) else (result, None)

    Generated = type(
        f"GeneratedBackwardFor_{op._namespace}_{op._opname}_{op._overloadname}",
        (torch.autograd.Function,),
        {"forward": staticmethod(forward), "backward": staticmethod(backward_with_keyset)},
    )
    apply_in_transform = super(torch.autograd.Function, Generated).apply

    def kernel(keyset, *args):
        in_transform = torch._C._are_functorch_transforms_active()
        if not (torch.is_grad_enabled() and torch._C._any_requires_grad(*args)):
            if in_transform:
                with forward_ad._set_fwd_grad_enabled(True), torch._C._AutoDispatchBelowAutograd():
                    return op.redispatch(keyset & after_autograd, *args)
            with torch._C._AutoDispatchBelowAutograd():
                return op.redispatch(keyset & after_autograd, *args)
        if in_transform:
            with enable_single_level_autograd_function():
                return apply_in_transform(*args, _Redispatch(keyset))
        return Generated.apply(*args, _Redispatch(keyset))

    return kernel


Jvp = Callable[[tuple, tuple], "torch.Tensor | tuple[torch.Tensor | None, ...] | None"]
"""``jvp(inputs, tangents)``: the tangent of an op's output (a tuple for several outputs, None
for an output without one) from its inputs (all arguments, primal values) and one tangent per
input (None where an input has none, and for non-tensor arguments). Its ops go through the
dispatcher, so the tangent is differentiable in turn."""

_LIBRARIES: dict[str, torch.library.Library] = {}


def register_autograd(
    qualname: str,
    backward: Callable,
    *,
    setup_context: Callable,
    jvp: Jvp | None = None,
    tangent_arguments: Sequence[str] | None = None,
) -> None:
    """``torch.library.register_autograd(qualname, backward, setup_context=...)`` with forward mode.

    A call without forward-mode tangents runs the kernel that ``torch.library`` builds, rebuilt so
    that ``torch.func`` transforms go through it too (:func:`_autograd_kernel`). A call with them
    runs that kernel on the same arguments with forward mode off (so a graph is recorded as usual
    where inputs require grad, and the backward sees the inputs' tangents: forward over reverse),
    then ``jvp`` for the output's tangent. ``jvp`` None, or a tangent of an argument outside
    ``tangent_arguments`` (default: all), raises ``NotImplementedError``. Ops that mutate, or take
    keyword-only or ``Tensor[]`` arguments, or return ``Tensor[]``, are refused (none of ours does).
    """
    op = lookup_op(qualname)
    schema = op._schema
    names = [argument.name for argument in schema.arguments]
    supported = set(names if tangent_arguments is None else tangent_arguments)
    if not supported <= set(names):
        raise ValueError(f"{qualname}: tangent_arguments {sorted(supported - set(names))} are not arguments of the op")
    if schema.is_mutable or any(
        argument.kwarg_only or is_tensorlist_like_type(argument.type)
        for argument in (*schema.arguments, *schema.returns)
    ):
        raise NotImplementedError(
            f"{qualname}: register_autograd supports functional ops with positional arguments only "
            f"(no mutated, keyword-only or Tensor[] arguments, no Tensor[] returns): {schema}"
        )
    registered = _autograd_kernel(op, backward, setup_context)

    def kernel(keyset, *args):
        if forward_ad._current_level < 0:
            return registered(keyset, *args)
        duals = [forward_ad.unpack_dual(a) if isinstance(a, torch.Tensor) else None for a in args]
        tangents = [None if d is None else d.tangent for d in duals]
        if all(t is None for t in tangents):
            return registered(keyset, *args)
        refused = [names[i] for i, t in enumerate(tangents) if t is not None and (jvp is None or names[i] not in supported)]
        if refused:
            rule = "has no forward-mode rule" if jvp is None else f"takes tangents of {', '.join(sorted(supported))} only"
            raise NotImplementedError(
                f"{qualname} {rule}: forward-mode AD (torch.autograd.forward_ad, torch.func.jvp, "
                f"torch.func.jacfwd) reached it with a tangent of {', '.join(refused)}"
            )
        with forward_ad._set_fwd_grad_enabled(False):
            output = registered(keyset, *args)
        primals = tuple(a if d is None else d.primal for a, d in zip(args, duals))
        inputs, _ = fill_defaults(op._schema, primals, {})
        output_tangents = jvp(inputs, tuple(tangents) + (None,) * (len(inputs) - len(args)))
        if isinstance(output, torch.Tensor):
            return output if output_tangents is None else forward_ad.make_dual(output, output_tangents)
        return tuple(o if t is None else forward_ad.make_dual(o, t) for o, t in zip(output, output_tangents))

    namespace, name = qualname.split("::")
    if namespace not in _LIBRARIES:
        _LIBRARIES[namespace] = torch.library.Library(namespace, "FRAGMENT")
    _LIBRARIES[namespace].impl(name, kernel, "Autograd", with_keyset=True)


def add_tangents(*terms: torch.Tensor | None) -> torch.Tensor | None:
    """The sum of the terms that are not None (None if all are): the product rule's bookkeeping."""
    total = None
    for term in terms:
        if term is not None:
            total = term if total is None else total + term
    return total


def convolution_tangent(
    conv: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
    input: torch.Tensor,
    weight: torch.Tensor,
    t_input: torch.Tensor | None,
    t_weight: torch.Tensor | None,
    t_bias: torch.Tensor | None,
) -> torch.Tensor | None:
    """The tangent of ``conv(input, weight, bias)``, linear in the input and affine in
    ``(weight, bias)``: ``conv(t_input, weight, None) + conv(input, t_weight, t_bias)``."""
    through_input = through_weights = None
    if t_input is not None:
        through_input = conv(t_input, weight, None)
    if t_weight is not None or t_bias is not None:
        through_weights = conv(input, torch.zeros_like(weight) if t_weight is None else t_weight, t_bias)
    return add_tangents(through_input, through_weights)
