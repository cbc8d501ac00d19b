"""torch.func's transforms, nested too, through every public op.

torch.library builds an op's Autograd kernel as an old-style ``autograd.Function``, which
``torch.func`` refuses ("it must override the setup_context staticmethod"): ``grad``, ``vjp``,
``jacrev`` and ``hessian`` failed on every op. ``register_autograd`` of
``ops/_direct_autograd.py`` builds its own kernel, which works under the transforms. Each case is
a function of float64 tensors, with positions and shifts inside interpolation cells, and the
arguments it is differentiated in. The transforms must give what eager autograd gives (the
wrappers' direct path, a separate route to the same formulas); ``jacrev`` must give what
``jacfwd`` gives (forward mode, an independent path); and a second derivative, by ``grad`` of
``grad`` and by each composition of ``jacrev`` and ``jacfwd``, must equal eager double backward,
or raise as it does where the op has none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

import learnable_ops as lo
from learnable_ops.ops._direct_autograd import register_autograd

# The ops have no batching rules: vmap (and jacrev, which vmaps the vjp) loops over the batch
# through torch's fallback, which warns about its speed.
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")

f64 = dict(dtype=torch.float64)


@dataclass
class Case:
    fn: Callable
    inputs: Callable[[], tuple[torch.Tensor, ...]]
    argnums: tuple[int, ...]
    forward_argnums: tuple[int, ...] | None = None  # those with a forward-mode rule (default: all of argnums)
    no_double_backward: str | None = None  # the error of an op without a second derivative


def _positions(*shape):
    # inside interpolation cells, away from the kinks at integers and the sparse mode's rounding at halves
    cells = torch.randint(-2, 2, shape).double()
    return cells + torch.where(torch.rand(shape) < 0.5, 0.1, 0.6) + 0.3 * torch.rand(shape, **f64)


def _image(channels=2):
    return torch.randn(1, channels, 5, 6, **f64)


def _diffconv_inputs(groups=1):
    return _image(), torch.randn(2, 2 // groups, 3, 3, **f64), torch.randn(2, **f64)


def _edge_inputs(groups=1):
    x, w, b = _diffconv_inputs(groups)
    return x, w, b, torch.randn_like(w), torch.randn_like(b)


def _construct_inputs():
    return torch.randn(2, 1, 3, **f64), _positions(2, 2, 1, 3), torch.rand(2, 2, 1, 3, **f64) + 0.2


def _sparse_inputs():
    return _image(), torch.randn(2, 1, 3, **f64), _positions(2, 2, 1, 3), torch.randn(2, **f64)


NO_DIFFCONV_DOUBLE_BACKWARD = "diff_conv2d does not support double backward"

CASES = {
    "shift-sparse": Case(lambda x, s: lo.shift(x, s, "zeros", "sparse"), lambda: (_image(), _positions(2, 2)), (0, 1)),
    "shift-active-reflect": Case(
        lambda x, s: lo.shift(x, s, "reflect", "active"), lambda: (_image(), _positions(2, 2)), (0, 1)
    ),
    "shift-active-1d-border": Case(
        lambda x, s: lo.shift(x, s, "border", "active"), lambda: (torch.randn(2, 2, 7, **f64), _positions(2, 1)), (0, 1)
    ),
    "pad-polynomial": Case(lambda x: lo.pad(x, (2, 1, 1, 2), "polynomial", order=2), lambda: (_image(),), (0,)),
    "pad-reflect": Case(lambda x: lo.pad(x, (2, 3, 1, 2), "reflect"), lambda: (_image(),), (0,)),
    "depthwise_conv2d": Case(
        lambda x, w, b: lo.depthwise_conv2d(x, w, b, stride=2, padding=1),
        lambda: (_image(), torch.randn(2, 1, 3, 3, **f64), torch.randn(2, **f64)),
        (0, 1, 2),
    ),
    "depthwise_conv1d": Case(
        lambda x, w, b: lo.depthwise_conv1d(x, w, b),
        lambda: (torch.randn(2, 2, 9, **f64), torch.randn(2, 1, 4, **f64), torch.randn(2, **f64)),
        (0, 1, 2),
    ),
    # stride 1 without edge kernels: the CPU's ring route (diff_conv2d_ring)
    "diff_conv2d-ring": Case(
        lambda x, w, b: lo.diff_conv2d(x, w, b),
        _diffconv_inputs,
        (0, 1, 2),
        no_double_backward=NO_DIFFCONV_DOUBLE_BACKWARD,
    ),
    "diff_conv2d-ring-depthwise": Case(
        lambda x, w, b: lo.diff_conv2d(x, w, b, groups=2),
        lambda: _diffconv_inputs(groups=2),
        (0, 1, 2),
        no_double_backward=NO_DIFFCONV_DOUBLE_BACKWARD,
    ),
    # stride 2: the padded route (diff_conv2d), with edge kernels
    "diff_conv2d-padded": Case(
        lambda x, w, b, ew, eb: lo.diff_conv2d(x, w, b, stride=2, edge_weight=ew, edge_bias=eb),
        _edge_inputs,
        (0, 1, 2, 3, 4),
        no_double_backward=NO_DIFFCONV_DOUBLE_BACKWARD,
    ),
    "diff_conv2d-padded-depthwise": Case(
        lambda x, w, b: lo.diff_conv2d(x, w, b, stride=2, groups=2),
        lambda: _diffconv_inputs(groups=2),
        (0, 1, 2),
        no_double_backward=NO_DIFFCONV_DOUBLE_BACKWARD,
    ),
    "dcls_construct-gauss": Case(
        lambda w, p, sig: lo.dcls_construct(w, p, sig, (5, 4), "gauss"),
        _construct_inputs,
        (0, 1, 2),
        forward_argnums=(0,),
        no_double_backward="dcls_construct has no second derivative",
    ),
    "dcls_construct-v1": Case(
        lambda w, p: lo.dcls_construct(w, p, None, (5, 4), "v1"),
        lambda: _construct_inputs()[:2],
        (0, 1),
        forward_argnums=(0,),
        no_double_backward="dcls_construct has no second derivative",
    ),
    "dcls_sparse_depthwise": Case(
        lambda x, w, p, b: lo.dcls_sparse_depthwise(x, w, p, b, 5, stride=(1, 2), padding=2, version="v1"),
        _sparse_inputs,
        (0, 1, 2, 3),
        forward_argnums=(0, 1, 3),
        no_double_backward="dcls_sparse_depthwise has no double backward",
    ),
}


def _loss(case):
    """A scalar, nonlinear in the op's output, so that second derivatives go through the backward ops."""
    return lambda *args: case.fn(*args).sin().sum()


def _eager_grad(fn, inputs, argnums, **kwargs):
    leaves = [x.detach().requires_grad_(i in argnums) for i, x in enumerate(inputs)]
    return leaves, torch.autograd.grad(fn(*leaves), [leaves[i] for i in argnums], **kwargs)


@pytest.mark.parametrize("name", CASES)
def test_grad(name):
    case = CASES[name]
    inputs = case.inputs()
    actual = torch.func.grad(_loss(case), argnums=case.argnums)(*inputs)
    _, expected = _eager_grad(_loss(case), inputs, case.argnums)
    torch.testing.assert_close(actual, expected)


@pytest.mark.parametrize("name", CASES)
def test_vjp(name):
    case = CASES[name]
    inputs = case.inputs()

    def fn(*diff):
        args = list(inputs)
        for i, x in zip(case.argnums, diff):
            args[i] = x
        return case.fn(*args)

    output, vjp = torch.func.vjp(fn, *(inputs[i] for i in case.argnums))
    cotangent = torch.randn_like(output)
    _, expected = _eager_grad(case.fn, inputs, case.argnums, grad_outputs=cotangent)
    torch.testing.assert_close(output, case.fn(*inputs))
    torch.testing.assert_close(vjp(cotangent), expected)


@pytest.mark.parametrize("name", CASES)
def test_jacrev(name):
    """jacrev (vmap over vjp) equals jacfwd (vmap over jvp, forward mode); in the arguments
    without a forward-mode rule, eager reverse mode's Jacobian."""
    case = CASES[name]
    inputs = case.inputs()
    actual = torch.func.jacrev(case.fn, argnums=case.argnums)(*inputs)
    forward_argnums = case.argnums if case.forward_argnums is None else case.forward_argnums
    expected = dict(zip(forward_argnums, torch.func.jacfwd(case.fn, argnums=forward_argnums)(*inputs)))
    if set(case.argnums) - set(forward_argnums):
        reverse = torch.autograd.functional.jacobian(case.fn, inputs)
        expected.update((i, reverse[i]) for i in case.argnums if i not in expected)
    for i, jacobian in zip(case.argnums, actual):
        torch.testing.assert_close(jacobian, expected[i])


@pytest.mark.parametrize("name", CASES)
def test_vmap_grad(name):
    """Per-sample gradients in the first argument's batch equal a loop."""
    case = CASES[name]
    inputs = case.inputs()
    batch = torch.stack([inputs[0], torch.randn_like(inputs[0])])
    in_dims = (0,) + (None,) * (len(inputs) - 1)
    actual = torch.func.vmap(torch.func.grad(_loss(case), argnums=case.argnums), in_dims=in_dims)(batch, *inputs[1:])
    expected = [_eager_grad(_loss(case), (sample, *inputs[1:]), case.argnums)[1] for sample in batch]
    for k, gradient in enumerate(actual):
        torch.testing.assert_close(gradient, torch.stack([e[k] for e in expected]))


def _gradient_sum(case):
    grad = torch.func.grad(_loss(case), argnums=case.argnums)
    return lambda *args: sum(g.sum() for g in grad(*args))


def _eager_double_backward(case, inputs):
    leaves, gradients = _eager_grad(_loss(case), inputs, case.argnums, create_graph=True)
    differentiated = [leaves[i] for i in case.argnums]
    second = torch.autograd.grad(sum(g.sum() for g in gradients), differentiated, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(differentiated, second))


@pytest.mark.parametrize("name", CASES)
def test_grad_of_grad(name):
    """grad(grad) equals eager double backward (create_graph=True); where an op has no second
    derivative, both raise the op's error (never a silent zero)."""
    case = CASES[name]
    inputs = case.inputs()
    second = torch.func.grad(_gradient_sum(case), argnums=case.argnums)
    if case.no_double_backward:
        with pytest.raises(NotImplementedError, match=case.no_double_backward):
            _eager_double_backward(case, inputs)
        with pytest.raises(NotImplementedError, match=case.no_double_backward):
            second(*inputs)
        return
    expected = _eager_double_backward(case, inputs)
    assert any(e.abs().max() > 0 for e in expected)
    torch.testing.assert_close(second(*inputs), expected)


SECOND_ORDER = {
    "jacrev(jacrev)": lambda f, argnums: torch.func.jacrev(torch.func.jacrev(f, argnums), argnums),
    "hessian": torch.func.hessian,  # jacfwd(jacrev): forward mode through the backward ops, on a grad level
    "jacrev(jacfwd)": lambda f, argnums: torch.func.jacrev(torch.func.jacfwd(f, argnums), argnums),
    "jacfwd(jacfwd)": lambda f, argnums: torch.func.jacfwd(torch.func.jacfwd(f, argnums), argnums),
}


@pytest.mark.parametrize(
    "name, transform",
    [
        (name, transform)
        for name in ("shift-active-reflect", "shift-active-1d-border", "pad-polynomial", "depthwise_conv1d")
        for transform in SECOND_ORDER
    ],
)
def test_hessian(name, transform):
    """The Hessian in every argument, by each composition of jacrev and jacfwd, equals eager double backward's."""
    case = CASES[name]
    inputs = case.inputs()
    actual = SECOND_ORDER[transform](_loss(case), case.argnums)(*inputs)
    expected = torch.autograd.functional.hessian(_loss(case), inputs)
    for a, i in enumerate(case.argnums):
        for b, j in enumerate(case.argnums):
            torch.testing.assert_close(actual[a][b], expected[i][j])


@pytest.mark.parametrize("name", ["shift-active-reflect", "diff_conv2d-ring"])
def test_compiled_grad(name):
    """torch.compile of a torch.func.grad traces the Autograd kernel into one graph."""
    case = CASES[name]
    inputs = case.inputs()
    compiled = torch.compile(torch.func.grad(_loss(case), argnums=case.argnums), fullgraph=True, backend="aot_eager")
    _, expected = _eager_grad(_loss(case), inputs, case.argnums)
    torch.testing.assert_close(compiled(*inputs), expected)


@pytest.fixture(scope="module")
def unsupported_schemas():
    library = torch.library.Library("learnable_ops_functorch_test", "DEF")
    library.define("keyword_only(Tensor x, *, int k) -> Tensor")
    library.define("tensor_list(Tensor[] xs) -> Tensor")
    library.define("returns_list(Tensor x) -> Tensor[]")
    library.define("mutates(Tensor(a!) x) -> ()")
    yield library
    library._destroy()


@pytest.mark.parametrize("name", ["keyword_only", "tensor_list", "returns_list", "mutates"])
def test_refuses_unsupported_schemas(unsupported_schemas, name):
    with pytest.raises(NotImplementedError, match=f"learnable_ops_functorch_test::{name}: register_autograd supports"):
        register_autograd(
            f"learnable_ops_functorch_test::{name}", lambda ctx, grad: grad, setup_context=lambda *_: None
        )
