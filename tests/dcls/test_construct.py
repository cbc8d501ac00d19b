"""learnable_ops.dcls_construct against the float64 reference, gradients (at and away from
lattice points), opcheck, compile, threads, dtypes, bad input and CPU/CUDA parity."""

import importlib.util
import pathlib

import pytest
import torch

import learnable_ops as lo
from learnable_ops import testing

# Loaded under a unique name: other families also have a tests/<family>/reference.py.
_spec = importlib.util.spec_from_file_location("dcls_construct_reference", pathlib.Path(__file__).with_name("reference.py"))
_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_reference)
reference_construct = _reference.reference_construct

VERSIONS = lo.DCLS_VERSIONS
# Odd, even, non-square and 1-wide sizes in 1D, 2D and 3D.
SIZES = [(7,), (6,), (5, 5), (3, 9), (4, 6), (9, 1), (3, 4, 5), (2, 5, 4)]


def make_params(D, co=3, cig=2, kc=4, version="gauss", broadcast=False, dtype=torch.float64, scale=1.5, seed=0):
    """Random (weight, P, SIG) with positions spread over (and a little past) the grid."""
    gen = torch.Generator().manual_seed(seed)
    n = len(D)
    weight = torch.randn(co, cig, kc, generator=gen, dtype=torch.float64)
    P = torch.randn(n, 1 if broadcast else co, cig, kc, generator=gen, dtype=torch.float64)
    P = P * torch.tensor([max(d / 4, 0.5) * scale for d in D], dtype=torch.float64).view(n, 1, 1, 1)
    SIG = None
    if version in ("gauss", "max"):
        SIG = (torch.rand(P.shape, generator=gen, dtype=torch.float64) * 1.2 + 0.05) * torch.where(
            torch.rand(P.shape, generator=gen) < 0.3, -1.0, 1.0
        ).double()
    cast = [t if t is None else t.to(dtype).requires_grad_() for t in (weight, P, SIG)]
    return cast


def construct(D, version):
    return lambda w, p, s: lo.dcls_construct(w, p, s, D, version)


def reference(D, version):
    return lambda w, p, s: reference_construct(w, p, s, D, version)


@pytest.mark.parametrize("broadcast", [False, True], ids=["P", "broadcastP"])
@pytest.mark.parametrize("D", SIZES, ids=str)
@pytest.mark.parametrize("version", VERSIONS)
def test_matches_reference(version, D, broadcast):
    args = make_params(D, version=version, broadcast=broadcast)
    testing.assert_matches_reference(construct(D, version), reference(D, version), args)


@pytest.mark.parametrize("version", VERSIONS)
def test_depthwise_and_grouped_shapes(version):
    # Depthwise (Ci/g = 1) with positions shared over output channels, as the ConvNeXt recipe,
    # and a dense-ish grouped shape with a single tap.
    for D, co, cig, kc, broadcast in [((7, 7), 8, 1, 5, False), ((5, 3), 4, 3, 1, True), ((11,), 6, 1, 3, True)]:
        args = make_params(D, co=co, cig=cig, kc=kc, version=version, broadcast=broadcast, seed=co)
        testing.assert_matches_reference(construct(D, version), reference(D, version), args)


@pytest.mark.parametrize("version", VERSIONS)
def test_positions_far_off_the_grid(version):
    # v0 drops what falls off the grid; the normalised versions renormalise what is left.
    D = (5, 4)
    w, p, s = make_params(D, version=version)
    with torch.no_grad():
        p[0, 0, 0, 0] = 2.6
        p[1, 1, 1, 1] = -3.4
        p[:, 2, 0, 2] = 40.0
        p[0, 2, 1, 3] = -1e6
    testing.assert_matches_reference(construct(D, version), reference(D, version), [w, p, s])


@pytest.mark.parametrize("version", ["max", "gauss"])
def test_wide_profiles_clipped_by_the_grid(version):
    # Half-widths of several cells: max windows span (and overrun) the grid.
    for D in [(4,), (5, 8), (3, 4, 2)]:
        w, p, s = make_params(D, version=version, seed=len(D))
        with torch.no_grad():
            s.mul_(4).add_(torch.sign(s) * 1.5)
        testing.assert_matches_reference(construct(D, version), reference(D, version), [w, p, s])
        testing.check_gradcheck(construct(D, version), [w, p, s])


@pytest.mark.parametrize("version", ["v1", "max", "gauss"])
def test_axis_a_of_P_drives_kernel_axis_a(version):
    # DCLS 0.1.x builds an all-zero kernel here (P[0] drives the columns, clamped with D_0).
    D = (3, 9)
    w = torch.ones(1, 1, 1, dtype=torch.float64)
    p = torch.tensor([1.0, -3.0], dtype=torch.float64).view(2, 1, 1, 1)
    s = None if version == "v1" else torch.zeros_like(p) + (0.0 if version == "max" else 0.01)
    k = lo.dcls_construct(w, p, s, D, version)[0, 0]
    assert k.shape == D
    assert k.argmax() == 2 * 9 + 1  # row 1 + 1, column -3 + 4
    assert k[2, 1] == pytest.approx(1.0, abs=1e-6 if version != "gauss" else 1e-2)


def test_v0_is_bilinear_interpolation():
    D = (6, 5)  # even rows: centre index 3
    w = torch.full((1, 1, 1), 2.0, dtype=torch.float64)
    p = torch.tensor([0.25, -1.5], dtype=torch.float64).view(2, 1, 1, 1)
    k = lo.dcls_construct(w, p, None, D, "v0")[0, 0]
    expected = torch.zeros(D, dtype=torch.float64)
    expected[3, 0] = 2 * 0.75 * 0.5
    expected[3, 1] = 2 * 0.75 * 0.5
    expected[4, 0] = 2 * 0.25 * 0.5
    expected[4, 1] = 2 * 0.25 * 0.5
    assert torch.equal(k, expected)


def test_normalised_versions_keep_each_tap_mass():
    D = (4, 5, 3)
    for version in ("v1", "max", "gauss"):
        w, p, s = make_params(D, version=version, scale=3.0)
        with torch.no_grad():  # every tap keeps at least one cell on the grid
            for a, d in enumerate(D):
                p[a].clamp_(-(d // 2), d - 1 - d // 2)
        k = lo.dcls_construct(w, p, s, D, version).detach()
        torch.testing.assert_close(k.sum(dim=(2, 3, 4)), w.detach().sum(-1) / (1 + 1e-7), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("broadcast", [False, True], ids=["P", "broadcastP"])
@pytest.mark.parametrize("D", [(6,), (5, 4), (3, 4, 3)], ids=str)
@pytest.mark.parametrize("version", VERSIONS)
def test_gradcheck_away_from_lattice_points(version, D, broadcast):
    args = make_params(D, co=2, cig=2, kc=3, version=version, broadcast=broadcast, seed=3)
    testing.check_gradcheck(construct(D, version), args)


def _loss(fn, args, grad):
    return (fn(*args) * grad).sum().item()


def one_sided_gradient(fn, args, grad, h=1e-7):
    """Finite differences from above, one coordinate at a time: (L(x + h e_j) - L(x)) / h."""
    base = _loss(fn, args, grad)
    out = []
    for idx, t in enumerate(args):
        if t is None:
            out.append(None)
            continue
        g = torch.zeros_like(t)
        flat = g.view(-1)
        for j in range(t.numel()):
            moved = [a.detach().clone() if a is not None else None for a in args]
            moved[idx].view(-1)[j] += h
            flat[j] = (_loss(fn, moved, grad) - base) / h
        out.append(g)
    return out


@pytest.mark.parametrize("D", [(5,), (5, 4), (3, 4, 3)], ids=str)
@pytest.mark.parametrize("version", VERSIONS)
def test_gradient_at_integer_positions_is_the_derivative_from_above(version, D):
    # The documented convention: at the kinks of the triangles (integer positions) and of |SIG|
    # (SIG = 0) the gradient is the one-sided derivative as the parameter increases.
    w, p, s = make_params(D, co=2, cig=1, kc=3, version=version, seed=5)
    with torch.no_grad():
        # Integers, each tap on the grid (a tap exactly one cell off it has N = 1e-7, where
        # finite differences are meaningless).
        for a, d in enumerate(D):
            p[a].copy_(torch.round(p[a]).clamp(-(d // 2), d - 1 - d // 2))
        p[:, 0, 0, 0] = 0.0
        if s is not None:
            s[:, 0, 0, :2] = 0.0
            if version == "max":
                s[:, 1] = torch.round(s[:, 1])
    args = [w, p, s]
    grad = torch.randn(2, 1, *D, dtype=torch.float64)
    out = lo.dcls_construct(w, p, s, D, version)
    analytic = torch.autograd.grad(out, [t for t in args if t is not None], grad)
    expected = [g for g in one_sided_gradient(construct(D, version), args, grad) if g is not None]
    for a, e in zip(analytic, expected):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)
    # Positions on the lattice keep a non-zero gradient (DCLS 0.1.x gives exactly 0 for v1/max).
    assert analytic[1].abs().sum() > 0


def test_gradient_at_integer_position_by_hand():
    # One v1 tap at the centre of a 5-cell axis: moving it up by h puts 1 - h at cell 2 and h at
    # cell 3, so with a kernel gradient e_3 the position gradient is 1/(1 + 1e-7).
    w = torch.ones(1, 1, 1, dtype=torch.float64, requires_grad=True)
    p = torch.zeros(1, 1, 1, 1, dtype=torch.float64, requires_grad=True)
    grad = torch.zeros(1, 1, 5, dtype=torch.float64)
    grad[0, 0, 3] = 1.0
    for version in ("v0", "v1"):
        (gp,) = torch.autograd.grad(lo.dcls_construct(w, p, None, (5,), version), [p], grad)
        expected = 1.0 if version == "v0" else 1.0 / (1 + 1e-7)
        assert gp.item() == pytest.approx(expected, rel=1e-12)
    # max with SIG = 0: widening raises cells 1, 2 and 3 by 1 each, so the normaliser
    # N = 1 + 1e-7 grows by 3; the centre cell K[2] = 1 / N moves by (N - 3) / N^2.
    s = torch.zeros_like(p, requires_grad=True)
    centre = torch.zeros(1, 1, 5, dtype=torch.float64)
    centre[0, 0, 2] = 1.0
    (gs,) = torch.autograd.grad(lo.dcls_construct(w, p, s, (5,), "max"), [s], centre)
    assert gs.item() == pytest.approx((1 + 1e-7 - 3) / (1 + 1e-7) ** 2, rel=1e-12)
    (gs,) = torch.autograd.grad(lo.dcls_construct(w, p, s, (5,), "max"), [s], grad)
    assert gs.item() == pytest.approx(1 / (1 + 1e-7), rel=1e-12)


def test_v0_gradient_matches_floor_interpolation_at_lattice_points():
    # The reference's floor-based v0 has autograd's derivative from above (d frac(c)/dc = 1).
    D = (5, 4)
    w, p, _ = make_params(D, version="v0", seed=7)
    with torch.no_grad():
        p.copy_(torch.round(p))
    testing.assert_matches_reference(construct(D, "v0"), reference(D, "v0"), [w, p, None])


@pytest.mark.parametrize("version", VERSIONS)
def test_opcheck(version):
    D = (5, 4)
    for broadcast in (False, True):
        w, p, s = make_params(D, co=3, cig=2, kc=3, version=version, broadcast=broadcast)
        testing.check_opcheck(torch.ops.learnable_ops.dcls_construct.default, (w, p, s, list(D), version))
        g = torch.randn(3, 2, *D, dtype=torch.float64)
        detached = [t if t is None else t.detach() for t in (w, p, s)]
        testing.check_opcheck(torch.ops.learnable_ops.dcls_construct_backward.default, (g, *detached, list(D), version))


@pytest.mark.parametrize("version", ["v1", "gauss"])
def test_compile_fullgraph(version):
    D = (5, 6)
    args = make_params(D, version=version, broadcast=True)

    def f(w, p, s):
        return lo.dcls_construct(w * 2, p, s, D, version).sin()

    testing.check_compile(f, args)


def test_second_derivative_raises_clearly():
    w, p, s = make_params((5, 5), version="gauss")
    grads = torch.autograd.grad(lo.dcls_construct(w, p, s, (5, 5), "gauss").square().sum(), [w, p, s], create_graph=True)
    with pytest.raises(NotImplementedError, match="no second derivative"):
        grads[1].sum().backward()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, testing.requires_cuda])])
@pytest.mark.parametrize("version", VERSIONS)
def test_autograd_records_only_what_grad_mode_and_requires_grad_ask_for(version, device):
    # Without grad mode nothing is recorded (the backward op runs below autograd); values must not change.
    D = (5, 4)
    w, p, s = (t if t is None else t.detach().to(device).requires_grad_() for t in make_params(D, version=version))
    recorded = lo.dcls_construct(w, p, s, D, version)
    with torch.no_grad():
        plain = lo.dcls_construct(w, p, s, D, version)
    assert recorded.grad_fn is not None and plain.grad_fn is None and not plain.requires_grad
    assert torch.equal(recorded, plain)
    # Only P requires grad: its gradient equals the one taken with every input requiring grad.
    g = torch.randn(recorded.shape, dtype=recorded.dtype, device=device)
    leaves = [t for t in (w, p, s) if t is not None]
    full = torch.autograd.grad(recorded, leaves, g)
    detached = [t if t is None else t.detach() for t in (w, p, s)]
    only_p = p.detach().requires_grad_()
    (gp,) = torch.autograd.grad(lo.dcls_construct(detached[0], only_p, detached[2], D, version), [only_p], g)
    assert torch.equal(gp, full[1])
    # The backward op records a node (that refuses a second derivative) only in grad mode.
    back = torch.ops.learnable_ops.dcls_construct_backward.default
    args = (g, w, p, s, list(D), version)
    with torch.no_grad():
        plain_grads = back(*args)
    assert all(t.grad_fn is None for t in plain_grads)
    recorded_grads = back(*args)
    assert recorded_grads[0].grad_fn is not None
    for a, b in zip(recorded_grads, plain_grads):
        assert torch.equal(a, b)
    assert torch.equal(plain_grads[0], full[0]) and torch.equal(plain_grads[1], full[1])
    with pytest.raises(NotImplementedError, match="no second derivative"):
        recorded_grads[0].sum().backward()


def test_torch_export():
    D = (5, 4)
    w, p, s = (t.detach() for t in make_params(D, version="max", broadcast=True))

    class Construct(torch.nn.Module):
        def forward(self, w, p, s):
            return lo.dcls_construct(w, p, s, D, "max")

    exported = torch.export.export(Construct(), (w, p, s))
    assert torch.equal(exported.module()(w, p, s), lo.dcls_construct(w, p, s, D, "max"))


@pytest.mark.parametrize("version", VERSIONS)
def test_thread_count_independent(version):
    # Enough (o, i) kernels that every version's work splits into several chunks.
    D = (9, 7)
    for broadcast in (False, True):
        args = make_params(D, co=48, cig=16, kc=6, version=version, broadcast=broadcast, dtype=torch.float32)
        testing.check_thread_independence(construct(D, version), args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("version", VERSIONS)
def test_low_precision_computes_in_float32(version, dtype):
    # Values against the float64 reference; gradients against the op in float64 on the same
    # (rounded) inputs, since rounding can put a tap on a kink, where the reference's autograd
    # takes the zero subgradient and the op the documented derivative from above.
    D = (5, 6)
    w64, p64, s64 = make_params(D, version=version)
    low = [t if t is None else t.detach().to(dtype).requires_grad_() for t in (w64, p64, s64)]
    up = [t if t is None else t.detach().double().requires_grad_() for t in low]
    out = lo.dcls_construct(*low, D, version)
    assert out.dtype == dtype
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float32: 1e-5}[dtype]
    torch.testing.assert_close(out.double(), reference_construct(*up, D, version), atol=tol, rtol=tol)
    ref = lo.dcls_construct(*up, D, version)
    grad = torch.randn(ref.shape, dtype=torch.float64).to(dtype)
    got = torch.autograd.grad(out, [t for t in low if t is not None], grad)
    want = torch.autograd.grad(ref, [t for t in up if t is not None], grad.double())
    for a, b in zip(got, want):
        assert a.dtype == dtype
        scale = b.abs().max().item() + 1
        torch.testing.assert_close(a.double() / scale, b / scale, atol=2 * tol, rtol=0)


def test_autocast_keeps_float32_construction():
    D = (5, 5)
    w, p, s = make_params(D, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        k = lo.dcls_construct(w, p, s, D, "gauss")
    assert k.dtype == torch.float32
    torch.testing.assert_close(k, lo.dcls_construct(w, p, s, D, "gauss"))


def test_non_contiguous_inputs_and_empty_channels():
    D = (5, 4)
    w, p, s = make_params(D, co=3, cig=2, kc=4, version="gauss")
    ref = lo.dcls_construct(w, p, s, D, "gauss")
    wt = w.detach().transpose(0, 2).contiguous().transpose(0, 2)
    pt = p.detach().permute(3, 2, 1, 0).contiguous().permute(3, 2, 1, 0)
    assert not wt.is_contiguous() and not pt.is_contiguous()
    torch.testing.assert_close(lo.dcls_construct(wt, pt, s.detach(), D, "gauss"), ref.detach(), atol=0, rtol=0)
    grad = torch.randn(ref.shape, dtype=torch.float64).transpose(2, 3).contiguous().transpose(2, 3)
    g1 = torch.autograd.grad(ref, [w, p, s], grad, retain_graph=True)
    g2 = torch.autograd.grad(ref, [w, p, s], grad.contiguous())
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)
    for co, cig in ((0, 2), (3, 0)):
        w, p, s = make_params(D, co=co, cig=cig, kc=2, version="max")
        k = lo.dcls_construct(w, p, s, D, "max")
        assert k.shape == (co, cig, *D)
        k.sum().backward()
        assert w.grad.shape == w.shape and p.grad.shape == p.shape and s.grad.shape == s.shape


def test_single_int_dilated_kernel_size():
    w, p, s = make_params((7, 7), version="gauss")
    torch.testing.assert_close(lo.dcls_construct(w, p, s, 7, "gauss"), lo.dcls_construct(w, p, s, (7, 7), "gauss"))


def test_bad_input():
    D = (5, 5)
    w, p, s = (t.detach() for t in make_params(D, version="gauss"))
    with pytest.raises(ValueError, match="P must have shape"):
        lo.dcls_construct(w, p[:, :, :, :2], s, D, "gauss")
    with pytest.raises(ValueError, match="P must have shape"):
        lo.dcls_construct(w, p, s, (5, 5, 5), "gauss")
    with pytest.raises(ValueError, match="P must have shape"):
        lo.dcls_construct(w, p[0], s, D, "gauss")
    with pytest.raises(ValueError, match="valid values are: v0, v1, max, gauss"):
        lo.dcls_construct(w, p, s, D, "bilinear")
    with pytest.raises(ValueError, match="dilated_kernel_size must be >= 1"):
        lo.dcls_construct(w, p, s, (5, 0), "gauss")
    with pytest.raises(ValueError, match="dilated_kernel_size must have 1, 2 or 3 entries"):
        lo.dcls_construct(w, torch.cat([p, p]), torch.cat([s, s]), (3, 3, 3, 3), "gauss")
    with pytest.raises(ValueError, match="kernel_count"):
        lo.dcls_construct(w[..., :0], p[..., :0], s[..., :0], D, "gauss")
    with pytest.raises(ValueError, match="SIG is required"):
        lo.dcls_construct(w, p, None, D, "max")
    with pytest.raises(ValueError, match="SIG is only used"):
        lo.dcls_construct(w, p, s, D, "v1")
    with pytest.raises(ValueError, match="SIG must have the shape of P"):
        lo.dcls_construct(w, p, s[:, :1], D, "gauss")
    with pytest.raises(TypeError, match="same dtype"):
        lo.dcls_construct(w, p.float(), s, D, "gauss")
    with pytest.raises(TypeError, match="weight must be a floating-point"):
        lo.dcls_construct(w.long(), p, s, D, "gauss")
    with pytest.raises(ValueError, match="weight must have shape"):
        lo.dcls_construct(w[0], p, s, D, "gauss")


def test_bad_input_reaching_the_kernel_directly():
    # The C++ checks name the argument too (for callers of torch.ops.learnable_ops.*).
    op = torch.ops.learnable_ops.dcls_construct.default
    back = torch.ops.learnable_ops.dcls_construct_backward.default
    D = [5, 5]
    w, p, s = (t.detach() for t in make_params(tuple(D), version="gauss"))
    with pytest.raises(ValueError, match="P must have shape"):
        op(w, p[:, :, :1], s, D, "gauss")
    with pytest.raises(ValueError, match="valid values are: v0, v1, max, gauss"):
        op(w, p, s, D, "linear")
    with pytest.raises(ValueError, match="dilated_kernel_size must be >= 1"):
        op(w, p, s, [5, -1], "gauss")
    with pytest.raises(ValueError, match="kernel_count"):
        op(w[..., :0], p[..., :0], s[..., :0], D, "gauss")
    with pytest.raises(ValueError, match="SIG is required"):
        op(w, p, None, D, "gauss")
    with pytest.raises(ValueError, match="grad_kernel must have shape"):
        back(torch.zeros(3, 2, 5, 4, dtype=torch.float64), w, p, s, D, "gauss")


def test_memory_stays_at_the_kernel_size():
    # Dense 16 -> 16, D = 23, Kc = 26, gauss: DCLS 0.1.x materialises prod(D) * n * Co * Ci * Kc
    # elements (26x the kernel); here forward + backward allocate about the kernel and its gradient.
    from learnable_ops.benchmarks.dcls import cpu_peak_bytes

    D = (23, 23)
    w, p, s = make_params(D, co=16, cig=16, kc=26, version="gauss", dtype=torch.float32)
    kernel_bytes = 16 * 16 * 23 * 23 * 4
    grad = torch.randn(16, 16, *D)

    def step():
        k = lo.dcls_construct(w, p, s, D, "gauss")
        k.backward(grad)

    step()
    assert cpu_peak_bytes(step) <= 2.5 * kernel_bytes


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("broadcast", [False, True], ids=["P", "broadcastP"])
@pytest.mark.parametrize("D", SIZES, ids=str)
@pytest.mark.parametrize("version", VERSIONS)
def test_cpu_equals_cuda(version, D, broadcast):
    args = make_params(D, co=5, cig=3, kc=7, version=version, broadcast=broadcast)
    testing.check_cpu_cuda(construct(D, version), args, atol=1e-10, rtol=1e-8)
    args32 = make_params(D, co=5, cig=3, kc=7, version=version, broadcast=broadcast, dtype=torch.float32)
    testing.check_cpu_cuda(construct(D, version), args32, atol=2e-4, rtol=1e-4)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("version", VERSIONS)
def test_cuda_gradcheck_opcheck_and_lattice_gradient(version):
    D = (5, 4)
    args = [t if t is None else t.detach().cuda().requires_grad_() for t in make_params(D, co=2, cig=2, kc=3, version=version, seed=3)]
    testing.check_gradcheck(construct(D, version), args)
    testing.check_opcheck(torch.ops.learnable_ops.dcls_construct.default, (*args, list(D), version))
    g = torch.randn(2, 2, *D, dtype=torch.float64, device="cuda")
    testing.check_opcheck(torch.ops.learnable_ops.dcls_construct_backward.default, (g, *[t if t is None else t.detach() for t in args], list(D), version))
    w, p, s = make_params(D, co=2, cig=1, kc=3, version=version, seed=5)
    with torch.no_grad():
        p.copy_(torch.round(p))
        if s is not None:
            s.zero_()
    grad = torch.randn(2, 1, *D, dtype=torch.float64)
    cpu = torch.autograd.grad(lo.dcls_construct(w, p, s, D, version), [t for t in (w, p, s) if t is not None], grad)
    dev = [t if t is None else t.detach().cuda().requires_grad_() for t in (w, p, s)]
    cuda = torch.autograd.grad(lo.dcls_construct(*dev, D, version), [t for t in dev if t is not None], grad.cuda())
    for a, b in zip(cpu, cuda):
        torch.testing.assert_close(b.cpu(), a, atol=1e-10, rtol=1e-8)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("version", VERSIONS)
def test_cuda_half_and_determinism(version):
    D = (7, 6)
    args = make_params(D, co=16, cig=4, kc=9, version=version, broadcast=True, dtype=torch.float32)
    dev = [t if t is None else t.detach().cuda().requires_grad_() for t in args]
    grad = torch.randn(16, 4, *D, device="cuda")
    first = torch.autograd.grad(lo.dcls_construct(*dev, D, version), [t for t in dev if t is not None], grad)
    again = torch.autograd.grad(lo.dcls_construct(*dev, D, version), [t for t in dev if t is not None], grad)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    for dtype in (torch.float16, torch.bfloat16):
        low = [t if t is None else t.detach().to(dtype) for t in dev]
        torch.testing.assert_close(
            lo.dcls_construct(*low, D, version).float(), lo.dcls_construct(*[t if t is None else t.detach() for t in dev], D, version), atol=3e-2, rtol=3e-2
        )
