"""Forward-mode AD through every op: a tangent either comes out right or the call raises.

``torch.library``'s autograd kernels ignore tangents, so before ``register_autograd`` of
``ops/_direct_autograd.py`` a dual input left every op without a tangent, silently (and
``torch.func.jvp``/``jacfwd`` answered zeros). Each case here is a function of float64 tensors
with the inputs that get a tangent. Its forward-mode tangent, in eager mode (with and without a
graph to record) and under ``torch.func.jvp``, must equal a central difference (exact up to
rounding for these multilinear ops within an interpolation cell), or, where the documented
gradient is not the forward's derivative (a sparse shift's, the input gradient with
``keep_img_grad_at_invalid=False``), ``J t`` built from reverse mode; and it must agree with
reverse mode (``<v, J t> = <J^T v, t>``). An argument without a forward-mode rule must raise
``NotImplementedError`` naming the op.
"""

from __future__ import annotations

import pathlib
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.autograd.forward_ad as fwAD
import torch.nn.functional as F

import learnable_ops as lo

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "shift"))
from shift_reference import reference_shift  # noqa: E402

ops = torch.ops.learnable_ops
f64 = dict(dtype=torch.float64)

MODES = ("forward_ad", "forward_ad with graph", "func.jvp")


@dataclass
class Case:
    fn: Callable
    inputs: Callable[[], tuple[torch.Tensor, ...]]
    tangent_inputs: tuple[int, ...]
    raises: str | None = None  # the op that refuses the tangent
    surrogate: bool = False  # the documented derivative is not the forward's: compare with reverse mode


def _shifts(channels, ndim):
    # inside interpolation cells, away from the kinks at integers
    return torch.randint(-3, 3, (channels, ndim)).double() + 0.2 + 0.6 * torch.rand(channels, ndim, **f64)


def _pad_inputs():
    return (torch.randn(1, 2, 5, 7, **f64),)


def _shift_inputs(*spatial):
    return torch.randn(1, 3, *spatial, **f64), _shifts(3, len(spatial))


def _depthwise_inputs():
    return torch.randn(2, 3, 6, 7, **f64), torch.randn(3, 1, 3, 4, **f64), torch.randn(3, **f64)


def _construct_inputs():
    return torch.randn(2, 1, 3, **f64), torch.rand(2, 2, 1, 3, **f64) * 4 - 2, torch.rand(2, 2, 1, 3, **f64) + 0.2


def _sparse_inputs():
    return (
        torch.randn(1, 2, 7, 8, **f64),
        torch.randn(2, 1, 3, **f64),
        torch.rand(2, 2, 1, 3, **f64) * 4 - 2,
        torch.randn(2, **f64),
    )


def _diffconv_inputs(groups=1):
    return torch.randn(1, 2, 6, 7, **f64), torch.randn(4, 2 // groups, 3, 3, **f64), torch.randn(4, **f64)


def _edge_inputs():
    x, w, b = _diffconv_inputs()
    return x, w, b, torch.randn_like(w), torch.randn_like(b)


# The public functional API, one case per path through a wrapper.
FUNCTIONAL = {
    "pad-reflect": Case(lambda x: lo.pad(x, (2, 3, 1, 4), "reflect"), _pad_inputs, (0,)),
    "pad-polynomial-crop": Case(
        lambda x: lo.pad(x, (2, -1, 1, 2), "polynomial", order=(1, 2), dilation=(2, 1)), _pad_inputs, (0,)
    ),
    "pad-3d-symmetric": Case(
        lambda x: lo.pad(x, (1, 2, 0, 1, 2, 1), "symmetric"), lambda: (torch.randn(1, 1, 3, 4, 5, **f64),), (0,)
    ),
    "shift-active-2d": Case(lambda x, s: lo.shift(x, s, "reflect", "active"), lambda: _shift_inputs(5, 6), (0, 1)),
    "shift-active-2d-shifts": Case(lambda x, s: lo.shift(x, s, "zeros", "active"), lambda: _shift_inputs(5, 6), (1,)),
    "shift-sparse-1d": Case(
        lambda x, s: lo.shift(x, s, "border", "sparse"), lambda: _shift_inputs(9), (0, 1), surrogate=True
    ),
    "shift-active-3d": Case(lambda x, s: lo.shift(x, s, "periodic", "active"), lambda: _shift_inputs(3, 4, 3), (0, 1)),
    "depthwise_conv2d": Case(
        lambda x, w, b: lo.depthwise_conv2d(x, w, b, stride=2, padding=1), _depthwise_inputs, (0, 1, 2)
    ),
    "depthwise_conv2d-input": Case(lambda x, w, b: lo.depthwise_conv2d(x, w, b), _depthwise_inputs, (0,)),
    "depthwise_conv2d-bias": Case(lambda x, w, b: lo.depthwise_conv2d(x, w, b), _depthwise_inputs, (2,)),
    "depthwise_conv1d": Case(
        lambda x, w: lo.depthwise_conv1d(x, w, padding="valid"),
        lambda: (torch.randn(1, 2, 9, **f64), torch.randn(2, 1, 4, **f64)),
        (0, 1),
    ),
    "dcls_construct-weight": Case(
        lambda w, p, sig: lo.dcls_construct(w, p, sig, (5, 4), "gauss"), _construct_inputs, (0,)
    ),
    "dcls_construct-P": Case(
        lambda w, p, sig: lo.dcls_construct(w, p, sig, (5, 4), "gauss"),
        _construct_inputs,
        (0, 1),
        raises="learnable_ops::dcls_construct",
    ),
    "dcls_construct-SIG": Case(
        lambda w, p, sig: lo.dcls_construct(w, p, sig, (5, 4), "max"),
        _construct_inputs,
        (2,),
        raises="learnable_ops::dcls_construct",
    ),
    "dcls_sparse_depthwise": Case(
        lambda x, w, p, b: lo.dcls_sparse_depthwise(x, w, p, b, 5, stride=(1, 2), padding=2, version="v1"),
        _sparse_inputs,
        (0, 1, 3),
    ),
    "dcls_sparse_depthwise-P": Case(
        lambda x, w, p, b: lo.dcls_sparse_depthwise(x, w, p, b, 5, padding=2),
        _sparse_inputs,
        (2,),
        raises="learnable_ops::dcls_sparse_depthwise",
    ),
    "diff_conv2d": Case(lambda x, w, b: lo.diff_conv2d(x, w, b), _diffconv_inputs, (0, 1, 2)),
    "diff_conv2d-depthwise": Case(
        lambda x, w: lo.diff_conv2d(x, w, groups=2),
        lambda: _diffconv_inputs(groups=2)[:2],
        (0,),
    ),
    "diff_conv2d-stride-edge": Case(
        lambda x, w, b, ew, eb: lo.diff_conv2d(x, w, b, stride=2, edge_weight=ew, edge_bias=eb, order=1),
        _edge_inputs,
        (0, 1, 2, 3, 4),
    ),
    "diff_conv2d-edge-bias-only": Case(
        lambda x, w, b, ew, eb: lo.diff_conv2d(x, w, b, edge_weight=ew, edge_bias=eb),
        _edge_inputs,
        (2,),
    ),
    "diff_conv2d-keep-false": Case(
        lambda x, w: lo.diff_conv2d(x, w, keep_img_grad_at_invalid=False),
        lambda: (torch.randn(1, 1, 5, 4, **f64), torch.randn(1, 1, 3, 3, **f64)),
        (0, 1),
        surrogate=True,
    ),
}


def _depthwise_backward_weight_inputs():
    return torch.randn(2, 3, 6, 7, **f64), torch.randn(2, 3, 6, 7, **f64)


def _diffconv_backward_inputs():
    x, w, b = _diffconv_inputs()
    return torch.randn(1, 4, 6, 7, **f64), x, w


# Every op of the library called through torch.ops, backward ops included (forward over
# reverse reaches them): the ones without a double backward have no forward-mode rule either.
RAW = {
    "pad": Case(lambda x: ops.pad(x, [1, 2, 2, 1], "symmetric"), _pad_inputs, (0,)),
    "pad_backward": Case(
        lambda g: ops.pad_backward(g, [1, 2, 5, 7], [1, 2, 2, 1], "polynomial", [2, 2], [1, 1]),
        lambda: (torch.randn(1, 2, 8, 10, **f64),),
        (0,),
    ),
    "shift": Case(lambda x, s: ops.shift(x, s, "symmetric", "active"), lambda: _shift_inputs(5, 6), (0, 1)),
    "shift_input_backward": Case(
        lambda g, s: ops.shift_input_backward(g, s, "reflect", "sparse"), lambda: _shift_inputs(5, 6), (0, 1), surrogate=True
    ),
    "shift_shifts_backward": Case(
        lambda g, x, s: ops.shift_shifts_backward(g, x, s, "border"),
        lambda: (torch.randn(1, 3, 5, 6, **f64), *_shift_inputs(5, 6)),
        (0, 1, 2),
    ),
    "shift_backward": Case(
        lambda g, x, s: ops.shift_backward(g, x, s, "zeros", "active"),
        lambda: (torch.randn(1, 3, 4, 3, 5, **f64), *_shift_inputs(4, 3, 5)),
        (0, 1, 2),
    ),
    "depthwise_conv2d": Case(
        lambda x, w, b: ops.depthwise_conv2d(x, w.squeeze(1), b, [1, 2], [1, 0, 2, 1]), _depthwise_inputs, (0, 1, 2)
    ),
    "depthwise_conv2d_backward_input": Case(
        lambda g, w: ops.depthwise_conv2d_backward_input(g, w, [2, 3, 6, 7], [1, 1], [1, 1, 1, 2]),
        lambda: (torch.randn(2, 3, 6, 7, **f64), torch.randn(3, 3, 4, **f64)),
        (0, 1),
    ),
    "depthwise_conv2d_backward_weight": Case(
        lambda g, x: ops.depthwise_conv2d_backward_weight(g, x, [3, 4], [1, 1], [1, 1, 1, 2]),
        _depthwise_backward_weight_inputs,
        (0, 1),
    ),
    "dcls_construct": Case(lambda w, p, sig: ops.dcls_construct(w, p, sig, [5, 4], "max"), _construct_inputs, (0,)),
    "dcls_construct_backward": Case(
        lambda g, w, p: ops.dcls_construct_backward(g, w, p, None, [5, 4], "v1"),
        lambda: (torch.randn(2, 1, 5, 4, **f64), *_construct_inputs()[:2]),
        (0,),
        raises="learnable_ops::dcls_construct_backward",
    ),
    "dcls_sparse_depthwise": Case(
        lambda x, w, p, b: ops.dcls_sparse_depthwise(x, w.squeeze(1), p.squeeze(2), b, [5, 5], [1, 1], [2, 2], "v0"),
        _sparse_inputs,
        (0, 1, 3),
    ),
    "dcls_sparse_depthwise_backward": Case(
        lambda g, x, w, p: ops.dcls_sparse_depthwise_backward(
            g, x, w.squeeze(1), p.squeeze(2), [5, 5], [1, 1], [2, 2], "v0", True
        ),
        lambda: (torch.randn(1, 2, 7, 8, **f64), *_sparse_inputs()[:3]),
        (0,),
        raises="learnable_ops::dcls_sparse_depthwise_backward",
    ),
    "diff_conv2d": Case(
        lambda x, w, b: ops.diff_conv2d(x, w, b, None, None, [1, 2], [1, 1], 1, [2, 1], True),
        _diffconv_inputs,
        (0, 1, 2),
    ),
    "diff_conv2d_backward": Case(
        lambda g, x, w: ops.diff_conv2d_backward(g, x, w, None, False, [1, 1], [1, 1], 1, [2, 2], True, [True] * 5),
        _diffconv_backward_inputs,
        (0,),
        raises="learnable_ops::diff_conv2d_backward",
    ),
    "diff_conv2d_padded_backward": Case(
        lambda g, x, w: ops.diff_conv2d_padded_backward(g, x, w, [1, 1], [1, 1], 1, [2, 2], [True] * 3),
        _diffconv_backward_inputs,
        (0,),
        raises="learnable_ops::diff_conv2d_padded_backward",
    ),
    "diff_conv2d_pad_layout": Case(
        lambda x: ops.diff_conv2d_pad_layout(x, [2, 1], [2, 1], [1, 2], False, True),
        _pad_inputs,
        (0,),
    ),
    "diff_conv2d_ring": Case(
        lambda x, w, b: ops.diff_conv2d_ring(x, w, b, [1, 1], 1, [2, 2], False)[0], _diffconv_inputs, (0, 1, 2)
    ),
    "diff_conv2d_ring_backward": Case(
        lambda g, x, w: ops.diff_conv2d_ring_backward(g, x, w, None, None, [1, 1], 1, [2, 2], [True] * 3),
        _diffconv_backward_inputs,
        (0,),
        raises="learnable_ops::diff_conv2d_ring_backward",
    ),
}


def _params(cases):
    return [pytest.param(name, mode, id=f"{name}-{mode}") for name in cases for mode in MODES]


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def central_difference(fn, inputs, tangents, step=1e-5):
    def at(sign):
        return _as_tuple(fn(*[x if t is None else x + sign * step * t for x, t in zip(inputs, tangents)]))

    return tuple((a - b) / (2 * step) for a, b in zip(at(1), at(-1)))


def reverse_mode_jvp(fn, inputs, tangents):
    """``J t`` from reverse mode, one backward pass per output element."""
    leaves = [x.detach().requires_grad_(t is not None) for x, t in zip(inputs, tangents)]
    with_tangent = [(x, t) for x, t in zip(leaves, tangents) if t is not None]
    result = []
    for out in _as_tuple(fn(*leaves)):
        flat = out.reshape(-1)
        rows = []
        for i in range(flat.numel()):
            grads = torch.autograd.grad(flat[i], [x for x, _ in with_tangent], retain_graph=True, allow_unused=True)
            rows.append(sum((g * t).sum() for g, (_, t) in zip(grads, with_tangent) if g is not None))
        result.append(torch.stack([torch.as_tensor(r, **f64) for r in rows]).view_as(out))
    return tuple(result)


def _tangents(case, inputs):
    return [torch.randn_like(x) if i in case.tangent_inputs else None for i, x in enumerate(inputs)]


def _assert_tangents_equal(actual, expected, atol=1e-7, rtol=1e-6):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        if a is None:  # forward mode's zero tangent: only for an output that does not depend on the inputs
            assert e.abs().max() == 0, "the tangent was dropped"
            continue
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol)


def _forward_ad(case, inputs, tangents, with_graph):
    """The output(s) and tangent(s) under torch.autograd.forward_ad."""
    inputs = [x.clone().requires_grad_(with_graph) for x in inputs]
    with fwAD.dual_level():
        duals = [x if t is None else fwAD.make_dual(x, t) for x, t in zip(inputs, tangents)]
        outs = _as_tuple(case.fn(*duals))
        unpacked = [fwAD.unpack_dual(o) for o in outs]
    return inputs, outs, tuple(u.tangent for u in unpacked)


def _func_jvp(case, inputs, tangents):
    def fn(*diff):
        args = list(inputs)
        for i, x in zip(case.tangent_inputs, diff):
            args[i] = x
        return case.fn(*args)

    diff = tuple(inputs[i] for i in case.tangent_inputs)
    return _as_tuple(torch.func.jvp(fn, diff, tuple(tangents[i] for i in case.tangent_inputs))[1])


def _run(case, mode):
    inputs = case.inputs()
    tangents = _tangents(case, inputs)
    if case.raises:
        with pytest.raises(NotImplementedError, match=f"{case.raises} .*forward-mode AD"):
            if mode == "func.jvp":
                _func_jvp(case, inputs, tangents)
            else:
                _forward_ad(case, inputs, tangents, mode == "forward_ad with graph")
        return
    reference = reverse_mode_jvp if case.surrogate else central_difference
    expected = reference(case.fn, inputs, tangents)
    if mode == "func.jvp":
        _assert_tangents_equal(_func_jvp(case, inputs, tangents), expected)
        return
    leaves, outs, actual = _forward_ad(case, inputs, tangents, mode == "forward_ad with graph")
    _assert_tangents_equal(actual, expected)
    if mode == "forward_ad with graph":
        # the dual output still backpropagates as the plain call does
        cotangents = [torch.randn_like(o) for o in outs]
        got = torch.autograd.grad(outs, leaves, cotangents, allow_unused=True)
        plain = [x.detach().requires_grad_() for x in inputs]
        want = torch.autograd.grad(_as_tuple(case.fn(*plain)), plain, cotangents, allow_unused=True)
        for g, w in zip(got, want):
            assert (g is None) == (w is None)
            if g is not None:
                torch.testing.assert_close(g, w, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name, mode", _params(FUNCTIONAL))
def test_functional(name, mode):
    _run(FUNCTIONAL[name], mode)


@pytest.mark.parametrize("name, mode", _params(RAW))
def test_raw_op(name, mode):
    _run(RAW[name], mode)


@pytest.mark.parametrize(
    "cases, name",
    [
        pytest.param(cases, name, id=f"{label}-{name}")
        for label, cases in (("functional", FUNCTIONAL), ("raw", RAW))
        for name, case in cases.items()
        if not case.raises
    ],
)
def test_agrees_with_reverse_mode(cases, name):
    """<v, J t> = <J^T v, t> with reverse mode's J^T v."""
    case = cases[name]
    inputs = case.inputs()
    tangents = _tangents(case, inputs)
    _, outs, jt = _forward_ad(case, inputs, tangents, with_graph=False)
    cotangents = [torch.randn_like(o) for o in outs]
    leaves = [x.clone().requires_grad_(t is not None) for x, t in zip(inputs, tangents)]
    differentiated = [(x, t) for x, t in zip(leaves, tangents) if t is not None]
    outs = _as_tuple(case.fn(*leaves))
    vjt = torch.autograd.grad(outs, [x for x, _ in differentiated], cotangents, allow_unused=True)
    forward = sum((v * t).sum() for v, t in zip(cotangents, jt) if t is not None)
    reverse = sum((g * t).sum() for g, (_, t) in zip(vjt, differentiated) if g is not None)
    torch.testing.assert_close(forward, reverse, atol=1e-9, rtol=1e-9)


def test_every_op_has_a_case():
    names = [name for name in torch._C._dispatch_get_all_op_names() if name.startswith("learnable_ops::")]
    assert sorted(RAW) == sorted(name.split("::")[1] for name in names)


JACFWD = [
    "pad-polynomial-crop",
    "shift-sparse-1d",
    "depthwise_conv2d",
    "dcls_construct-weight",
    "dcls_construct-P",
    "dcls_sparse_depthwise",
    "diff_conv2d-stride-edge",
]


@pytest.mark.parametrize("name", JACFWD)
def test_jacfwd(name):
    """torch.func.jacfwd (vmap over jvp, through the ops' batching fallback) gives the Jacobian
    that reverse mode gives."""
    case = FUNCTIONAL[name]
    inputs = case.inputs()
    i = case.tangent_inputs[-1]

    def fn(x):
        args = list(inputs)
        args[i] = x
        return case.fn(*args)

    if case.raises:
        with pytest.raises(NotImplementedError, match=case.raises):
            torch.func.jacfwd(fn)(inputs[i])
        return
    forward = torch.func.jacfwd(fn)(inputs[i])
    reverse = torch.autograd.functional.jacobian(fn, inputs[i])
    torch.testing.assert_close(forward, reverse, atol=1e-9, rtol=1e-8)


# Plain-PyTorch references that torch differentiates in forward mode itself.
NATIVE = {
    "pad-reflect": lambda x: F.pad(x, (2, 3, 1, 4), mode="reflect"),
    "shift-active-2d": lambda x, s: reference_shift(x, s, "reflect", "active"),
    "shift-sparse-1d": lambda x, s: reference_shift(x, s, "border", "sparse"),
    "depthwise_conv2d": lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, groups=3),
}


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_matches_native_forward_ad_of_reference(name):
    case = FUNCTIONAL[name]
    inputs = case.inputs()
    tangents = _tangents(case, inputs)
    _, _, actual = _forward_ad(case, inputs, tangents, with_graph=False)
    reference = Case(NATIVE[name], case.inputs, case.tangent_inputs)
    _, _, expected = _forward_ad(reference, inputs, tangents, with_graph=False)
    _assert_tangents_equal(actual, expected)


HVP = {
    "pad": lambda x: lo.pad(x, (1, 2, 2, 1), "polynomial", order=2),
    "shift": lambda x: lo.shift(x[:, :2], x[0, 2, :2, :2] + 0.3, "reflect", "active"),
    "depthwise": lambda x: lo.depthwise_conv2d(x, x[:, :, :3, :3].sum(0, keepdim=True).transpose(0, 1)),
}


@pytest.mark.parametrize("name", sorted(HVP))
def test_forward_over_reverse(name):
    """A Hessian-vector product as the forward-mode derivative of a gradient (the backward ops'
    rules) equals the double-backward one."""
    fn = HVP[name]
    x = torch.randn(1, 3, 6, 6, **f64)
    v = torch.randn_like(x)

    def loss(x):
        return fn(x).pow(3).sum()

    _, expected = torch.autograd.functional.hvp(loss, x, v)
    with fwAD.dual_level():
        dual = fwAD.make_dual(x.clone().requires_grad_(), v)
        (grad,) = torch.autograd.grad(loss(dual), dual, create_graph=True)
        actual = fwAD.unpack_dual(grad).tangent
    assert actual is not None
    torch.testing.assert_close(actual, expected, atol=1e-9, rtol=1e-8)


def _modules():
    shift = lo.nn.Shift2d(3, padding_mode="reflect", mode="active", **f64)
    with torch.no_grad():
        shift.weight.copy_(_shifts(3, 2))
    dcls = {
        method: lo.nn.Dcls2d(3, 3, kernel_count=3, dilated_kernel_size=5, padding=2, groups=3, version="v1", method=method, **f64)
        for method in ("construct", "dense", "sparse")
    }
    diffconv = lo.nn.DiffConv2d(3, 4, 3, train_edge_kernel=True, **f64)
    return {"Shift2d": shift, **{f"Dcls2d-{m}": layer for m, layer in dcls.items()}, "DiffConv2d": diffconv}


MODULES = ["Shift2d", "Dcls2d-construct", "Dcls2d-dense", "Dcls2d-sparse", "DiffConv2d"]


@pytest.mark.parametrize("name", MODULES)
def test_module(name):
    """torch.func.jvp of a layer in its input and in its parameters (functional_call); a DCLS
    layer's positions have no forward-mode rule."""
    layer = _modules()[name]
    x = torch.randn(2, 3, 7, 8, **f64)
    t = torch.randn_like(x)
    _, tangent = torch.func.jvp(layer, (x,), (t,))
    _assert_tangents_equal((tangent,), central_difference(layer, [x], [t]))

    params = {k: p.detach() for k, p in layer.named_parameters() if k != "P"}
    directions = {k: torch.randn_like(p) for k, p in params.items()}

    def call(params):
        return torch.func.functional_call(layer, params, (x,), strict=False)

    _, tangent = torch.func.jvp(call, (params,), (directions,))
    names = sorted(params)

    def by_position(*values):
        return call(dict(zip(names, values)))

    expected = central_difference(by_position, [params[k] for k in names], [directions[k] for k in names])
    _assert_tangents_equal((tangent,), expected)
    if name.startswith("Dcls2d"):
        P = layer.P.detach()
        with pytest.raises(NotImplementedError, match="learnable_ops::dcls_.*P"):
            torch.func.jvp(lambda P: call({"P": P}), (P,), (torch.randn_like(P),))
