"""The shift op: reference, gradients, determinism, integrations, bad input, CUDA parity."""

import math

import numpy as np
import pytest
import torch

import learnable_ops as lo
from learnable_ops import testing

from reference import interpolated_shift, pad_map, reference_shift

NUMPY_MODE = {"zeros": "constant", "border": "edge", "periodic": "wrap", "reflect": "reflect", "symmetric": "symmetric"}
SHAPES = {1: (2, 3, 7), 2: (2, 3, 5, 6), 3: (1, 2, 3, 4, 5)}
ops = torch.ops.learnable_ops


def random_shifts(channels, ndim, spread, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return ((torch.rand(channels, ndim, generator=gen, dtype=torch.float64) * 2 - 1) * spread).to(dtype)


@pytest.mark.parametrize("mode", lo.PAD_MODES)
@pytest.mark.parametrize("n", [1, 2, 5])
def test_reference_pad_map_is_numpy_pad(mode, n):
    p = torch.arange(-40, 40 + n)
    idx, mask = pad_map(p, n, mode)
    expected = np.pad(np.arange(n, dtype=np.float64), 40, mode=NUMPY_MODE[mode])
    got = (torch.arange(n, dtype=torch.float64)[idx] * mask).numpy() if mode != "zeros" else np.where(mask.numpy() > 0, idx.numpy(), 0)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_matches_reference(ndim, padding_mode, mode):
    """Values, input gradient and shift gradient, shifts up to 2.5x the input size."""
    x = torch.randn(SHAPES[ndim], dtype=torch.float64, requires_grad=True)
    for seed, spread in enumerate((1.5, 2.5 * max(x.shape[2:]))):
        s = random_shifts(x.shape[1], ndim, spread, seed).requires_grad_()
        testing.assert_matches_reference(
            lambda a, b: lo.shift(a, b, padding_mode, mode),
            lambda a, b: reference_shift(a, b, padding_mode, mode),
            [x, s],
            atol=1e-12,
            rtol=1e-12,
        )


@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_huge_shifts(padding_mode, dtype):
    """Shifts of 1e9 (and 1e30, -1e18) index exactly in every mode, with no overflow."""
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    s = torch.tensor([[1e9, -1e9], [1e9 + 1, 3.0], [1e30, -1e18], [-7.0, 1e9 - 2]], dtype=dtype)
    for c in range(4):
        exact = [int(v) for v in s[c].tolist()]
        # An equivalent small shift, reduced with Python's exact integers.
        small = []
        for v, n in zip(exact, x.shape[2:]):
            period = {"periodic": n, "reflect": 2 * n - 2, "symmetric": 2 * n}.get(padding_mode)
            small.append(v % period if period else max(-n - 1, min(n + 1, v)))
        small_s = torch.tensor([small], dtype=torch.float64)
        for mode in lo.SHIFT_MODES:
            got = lo.shift(x[:, c : c + 1].to(dtype), s[c : c + 1], padding_mode, mode)
            expected = reference_shift(x[:, c : c + 1], small_s, padding_mode, mode).to(dtype)
            assert torch.equal(got, expected), (c, mode)
    if dtype == torch.float64:
        s = torch.tensor([[1e9 + 0.25, -1e9 - 0.75]] * 4, dtype=dtype, requires_grad=True)
        small = s.detach() - torch.tensor([1e9, -1e9], dtype=dtype)
        if padding_mode in ("periodic", "reflect", "symmetric"):
            got = lo.shift(x, s, padding_mode, "active")
            period = {"periodic": (5, 6), "reflect": (8, 10), "symmetric": (10, 12)}[padding_mode]
            shift_back = torch.tensor([1e9 % period[0], -(1e9 % period[1])], dtype=dtype)
            torch.testing.assert_close(got, reference_shift(x, small + shift_back, padding_mode, "active"))


def test_rounding_is_half_to_even():
    x = torch.arange(9.0).repeat(8, 1).unsqueeze(0)
    s = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49, 0.51]).view(8, 1)
    out = lo.shift(x, s, "zeros", "sparse")
    for c, r in enumerate(torch.round(s).view(-1).int().tolist()):
        expected = torch.tensor([float(i - r) if 0 <= i - r < 9 else 0.0 for i in range(9)])
        assert torch.equal(out[0, c], expected), c


def test_torchshifts_spot_values():
    """Spot values recorded from torchshifts where its convention agrees with ours."""
    x = torch.arange(50.0).view(1, 2, 5, 5)
    w = torch.tensor([[1.0, -2.0], [0.4, 1.6]])
    sparse = lo.shift(x, w, "zeros", "sparse")
    assert sparse[0, 0, 0].tolist() == [0, 0, 0, 0, 0]
    assert sparse[0, 0, 1].tolist() == [2, 3, 4, 0, 0]
    assert sparse[0, 1, 0].tolist() == [0, 0, 25, 26, 27]
    rows = {"reflect": [7, 8, 9, 8, 7], "symmetric": [2, 3, 4, 4, 3], "periodic": [22, 23, 24, 20, 21], "border": [2, 3, 4, 4, 4]}
    for padding_mode, row in rows.items():
        for mode in lo.SHIFT_MODES:  # channel 0 has integer shifts: sparse == active
            assert lo.shift(x, w, padding_mode, mode)[0, 0, 0].tolist() == row
    # torchshifts' active mode sampled at (i + 0.4, j - 0.4): [16.2, 27.6, ...]. A true shift by
    # (0.4, 1.6) samples at (i - 0.4, j - 1.6): row 0 reads the zero row -1 with weight 0.4.
    active = lo.shift(x, w, "zeros", "active")[0, 1, 0]
    expected = 0.6 * torch.tensor([0.0, 0.4 * 25, 0.6 * 25 + 0.4 * 26, 0.6 * 26 + 0.4 * 27, 0.6 * 27 + 0.4 * 28])
    torch.testing.assert_close(active, expected)
    assert not torch.allclose(active, torch.tensor([16.2, 27.6, 28.6, 29.6, 30.6]))


def test_large_integer_shifts_equal_numpy_pad():
    x = torch.arange(5.0).repeat(5, 1).unsqueeze(0)
    s = torch.tensor([-7.0, -3.0, 0.0, 3.0, 7.0]).view(5, 1)
    for padding_mode, np_mode in NUMPY_MODE.items():
        out = lo.shift(x, s, padding_mode, "sparse")
        padded = np.pad(np.arange(5.0), 7, mode=np_mode)
        for c, v in enumerate(s.view(-1).int().tolist()):
            np.testing.assert_array_equal(out[0, c].numpy(), padded[7 - v : 12 - v])


@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_gradcheck_active(ndim, padding_mode):
    shape = {1: (1, 2, 5), 2: (1, 2, 4, 3), 3: (1, 1, 3, 3, 4)}[ndim]
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    s = (random_shifts(shape[1], ndim, 4.0, 1).round() + 0.3).requires_grad_()  # off the lattice
    testing.check_gradcheck(lambda a, b: lo.shift(a, b, padding_mode, "active"), [x, s])


@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
def test_gradgradcheck_active(padding_mode):
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([[0.3, -1.6], [2.2, 0.7]], dtype=torch.float64, requires_grad=True)
    testing.check_gradcheck(lambda a, b: lo.shift(a, b, padding_mode, "active"), [x, s], gradgrad=True)
    x3 = torch.randn(1, 1, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    s3 = torch.tensor([[0.3, -1.6, 1.2]], dtype=torch.float64, requires_grad=True)
    testing.check_gradcheck(lambda a, b: lo.shift(a, b, padding_mode, "active"), [x3, s3], gradgrad=True)


@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_sparse_gradients(ndim, padding_mode):
    """Sparse: the input gradient passes gradcheck exactly; the shift gradient is the
    derivative of the interpolated shift at the real-valued shift."""
    shape = {1: (1, 2, 5), 2: (1, 2, 4, 3), 3: (1, 1, 3, 3, 4)}[ndim]
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    s = random_shifts(shape[1], ndim, 4.0, 2)
    testing.check_gradcheck(lambda a: lo.shift(a, s, padding_mode, "sparse"), [x], gradgrad=True)
    s = s.requires_grad_()
    g = torch.randn(shape, dtype=torch.float64)
    (sparse_grad,) = torch.autograd.grad(lo.shift(x, s, padding_mode, "sparse"), s, g)
    (active_grad,) = torch.autograd.grad(interpolated_shift(x, s, padding_mode), s, g)
    torch.testing.assert_close(sparse_grad, active_grad, atol=1e-12, rtol=1e-12)
    # ... which is also the finite difference of the interpolated shift
    eps = 1e-6
    for k in range(ndim):
        e = torch.zeros_like(s)
        e[:, k] = eps
        plus = (interpolated_shift(x, s + e, padding_mode) * g).sum((0,) + tuple(range(2, x.dim())))
        minus = (interpolated_shift(x, s - e, padding_mode) * g).sum((0,) + tuple(range(2, x.dim())))
        torch.testing.assert_close(sparse_grad[:, k], ((plus - minus) / (2 * eps)).detach(), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
def test_gradient_at_lattice_points_is_one_sided_from_above(padding_mode):
    """At integer s the documented shift gradient is (A(s + h) - A(s)) / h, i.e. along
    each axis x[i - s - 1] - x[i - s] (the sign: out[i] = x(i - s))."""
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64)
    s = torch.tensor([[1.0, -2.0], [0.0, 3.0]], dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(x)
    for mode in lo.SHIFT_MODES:
        (grad,) = torch.autograd.grad(lo.shift(x, s, padding_mode, mode), s, g)
        h = 1e-7
        for k in range(2):
            e = torch.zeros_like(s)
            e[:, k] = h
            fwd = ((interpolated_shift(x, s.detach() + e, padding_mode) - interpolated_shift(x, s.detach(), padding_mode)) * g).sum((0, 2, 3)) / h
            torch.testing.assert_close(grad[:, k], fwd, atol=1e-6, rtol=1e-6)
    # 1D, by hand: d/ds sum g * x[i - s] = sum g * (x[i - s - 1] - x[i - s])
    x1 = torch.arange(8.0, dtype=torch.float64).pow(2).view(1, 1, 8)
    s1 = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(lo.shift(x1, s1, "zeros", "active").sum(), s1)
    xp = torch.cat([torch.zeros(3, dtype=torch.float64), x1.view(-1)])
    expected = sum(xp[i - 2 - 1 + 3] - xp[i - 2 + 3] for i in range(8))
    assert grad.item() == pytest.approx(expected.item())
    assert grad.item() < 0  # moving content further up a rising ramp lowers every sample


def smooth_image(size=24):
    i = torch.arange(size, dtype=torch.float64)
    yy, xx = torch.meshgrid(i, i, indexing="ij")
    blobs = [(7.0, 9.0, 3.0, 1.0), (15.0, 14.0, 4.0, -0.7), (11.0, 5.0, 2.5, 0.5)]
    img = sum(a * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) for cy, cx, r, a in blobs)
    return img.view(1, 1, size, size)


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
def test_learns_a_known_displacement(mode):
    """Gradient descent on ||shift(x; w) - x shifted by (+2, -1)||^2 finds the displacement."""
    x = smooth_image()
    target = interpolated_shift(x, torch.tensor([[2.0, -1.0]], dtype=torch.float64), "zeros")
    w = torch.tensor([[0.3, 0.4]], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        loss = (lo.shift(x, w, "zeros", mode) - target).pow(2).sum()
        loss.backward()
        opt.step()
    if mode == "active":
        torch.testing.assert_close(w.detach(), torch.tensor([[2.0, -1.0]], dtype=torch.float64), atol=1e-3, rtol=0)
    else:
        assert torch.round(w.detach()).tolist() == [[2.0, -1.0]]


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
def test_thread_count_independent(padding_mode, mode):
    x = torch.randn(3, 5, 17, 40, requires_grad=True)
    s = random_shifts(5, 2, 30.0, 3, torch.float32).requires_grad_()
    testing.check_thread_independence(lambda a, b: lo.shift(a, b, padding_mode, mode), [x, s])
    x3 = torch.randn(2, 3, 5, 6, 7, requires_grad=True)
    s3 = random_shifts(3, 3, 8.0, 4, torch.float32).requires_grad_()
    testing.check_thread_independence(lambda a, b: lo.shift(a, b, padding_mode, mode), [x3, s3])


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_opcheck(ndim, mode):
    x = torch.randn(SHAPES[ndim], dtype=torch.float64, requires_grad=True)
    s = (random_shifts(x.shape[1], ndim, 3.0, 5).round() + 0.25).requires_grad_()
    testing.check_opcheck(ops.shift.default, (x, s, "reflect", mode))
    g = torch.randn(SHAPES[ndim], dtype=torch.float64, requires_grad=True)
    testing.check_opcheck(ops.shift_input_backward.default, (g, s, "symmetric", mode))
    testing.check_opcheck(ops.shift_shifts_backward.default, (g, x, s, "border"))


def test_compile_fullgraph():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([[0.3, -1.6], [2.2, 0.7], [-0.5, 4.5]], dtype=torch.float64, requires_grad=True)

    def f(a, b):
        return lo.shift(a.sin(), b * 2, "periodic", "active") * 2 + lo.shift(a, b, "reflect", "sparse")

    testing.check_compile(f, [x, s])


def test_layouts_dtypes_and_empty():
    x = torch.randn(2, 6, 5, 7)
    s = random_shifts(6, 2, 3.0, 6, torch.float32)
    for mode in lo.SHIFT_MODES:
        ref = lo.shift(x, s, "symmetric", mode)
        assert torch.equal(lo.shift(x.to(memory_format=torch.channels_last), s, "symmetric", mode), ref)
        assert torch.equal(lo.shift(x.transpose(2, 3).contiguous().transpose(2, 3), s, "symmetric", mode), ref)
        assert torch.equal(lo.shift(x[:, ::2], s[::2], "symmetric", mode), ref[:, ::2])
        # shifts of another dtype than the input: same result, gradient in the shifts' dtype
        s64 = s.double().requires_grad_()
        out = lo.shift(x, s64, "symmetric", mode)
        assert out.dtype == torch.float32 and torch.equal(out, ref)
        out.sum().backward()
        assert s64.grad.dtype == torch.float64
        empty = torch.randn(0, 6, 5, 7, requires_grad=True)
        s_req = s.clone().requires_grad_()
        out = lo.shift(empty, s_req, "reflect", mode)
        assert out.shape == empty.shape
        out.sum().backward()
        assert empty.grad.shape == empty.shape and torch.equal(s_req.grad, torch.zeros_like(s))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
def test_half_precision(dtype, mode):
    x = torch.randn(2, 3, 6, 7, requires_grad=True)
    s = random_shifts(3, 2, 4.0, 7, torch.float32).requires_grad_()
    g = torch.randn(2, 3, 6, 7)
    xh = x.detach().to(dtype).requires_grad_()
    sh = s.detach().to(dtype).requires_grad_()
    outh = lo.shift(xh, sh, "reflect", mode)
    gxh, gsh = torch.autograd.grad(outh, (xh, sh), g.to(dtype))
    assert outh.dtype == dtype and gsh.dtype == dtype
    # The half shifts themselves are rounded: compare with the float op at those shifts.
    out_at = lo.shift(x, sh.detach().float(), "reflect", mode)
    torch.testing.assert_close(outh.float(), out_at, atol=3e-2, rtol=3e-2)
    (gx_at,) = torch.autograd.grad(lo.shift(x, sh.detach().float(), "reflect", mode), (x,), g)
    torch.testing.assert_close(gxh.float(), gx_at, atol=6e-2, rtol=3e-2)
    assert torch.isfinite(gsh).all()


def test_non_finite_shifts_give_nan_channels():
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    s = torch.tensor([[0.5, 1.0], [float("nan"), 0.0], [1.0, float("inf")], [-2.0, -float("inf")]], requires_grad=True)
    for padding_mode in lo.PAD_MODES:
        for mode in lo.SHIFT_MODES:
            out = lo.shift(x, s, padding_mode, mode)
            assert torch.equal(out[:, 0], lo.shift(x[:, :1], s[:1].detach(), padding_mode, mode)[:, 0])
            assert out[:, 1:].isnan().all()
            gx, gs = torch.autograd.grad(out, (x, s), torch.ones_like(out))
            assert gx[:, 1:].isnan().all() and gs[1:].isnan().all()
            assert torch.isfinite(gx[:, 0]).all() and torch.isfinite(gs[0]).all()


class TestBadInput:
    def test_wrong_shift_shape_or_channels(self):
        x = torch.randn(1, 3, 4, 5)
        for bad in (torch.zeros(3, 1), torch.zeros(2, 2), torch.zeros(3, 2, 1), torch.zeros(6)):
            with pytest.raises(ValueError, match="shifts must have shape"):
                lo.shift(x, bad)
            with pytest.raises((ValueError, RuntimeError), match="shifts must have shape"):
                ops.shift(x, bad, "zeros", "sparse")

    def test_unknown_padding_mode_and_mode(self):
        x, s = torch.randn(1, 2, 4), torch.zeros(2, 1)
        with pytest.raises(ValueError, match="zeros, border, periodic, reflect, symmetric"):
            lo.shift(x, s, "mirror")
        with pytest.raises(ValueError, match="padding_mode"):
            ops.shift(x, s, "mirror", "sparse")
        with pytest.raises(ValueError, match="sparse, active"):
            lo.shift(x, s, "zeros", "bilinear")
        with pytest.raises(ValueError, match="sparse, active"):
            ops.shift(x, s, "zeros", "bilinear")

    def test_non_floating_input_or_shifts(self):
        with pytest.raises(TypeError, match="input must be a floating-point tensor"):
            lo.shift(torch.arange(8).view(1, 2, 4), torch.zeros(2, 1))
        with pytest.raises(TypeError, match="input must be a floating-point tensor"):
            ops.shift(torch.arange(8).view(1, 2, 4), torch.zeros(2, 1), "zeros", "sparse")
        with pytest.raises(TypeError, match="shifts must be a floating-point tensor"):
            lo.shift(torch.randn(1, 2, 4), torch.zeros(2, 1, dtype=torch.int64))
        with pytest.raises(TypeError, match="shifts must be a floating-point tensor"):
            ops.shift(torch.randn(1, 2, 4), torch.zeros(2, 1, dtype=torch.int64), "zeros", "sparse")
        with pytest.raises(TypeError, match="input must be a torch.Tensor"):
            lo.shift([1.0, 2.0], torch.zeros(2, 1))

    def test_wrong_rank(self):
        with pytest.raises(ValueError, match="3D, 4D or 5D"):
            lo.shift(torch.randn(2, 4), torch.zeros(4, 0))
        with pytest.raises(ValueError, match="3D, 4D or 5D"):
            ops.shift(torch.randn(1, 1, 1, 1, 1, 3), torch.zeros(1, 4), "zeros", "sparse")

    def test_device_mismatch(self):
        with pytest.raises(ValueError, match="same device"):
            lo.shift(torch.randn(1, 2, 4), torch.zeros(2, 1, device="meta"))

    def test_backward_ops_check_their_arguments(self):
        g, x, s = torch.randn(1, 2, 4), torch.randn(1, 2, 5), torch.zeros(2, 1)
        with pytest.raises(ValueError, match="grad_output must have the shape of input"):
            ops.shift_shifts_backward(g, x, s, "zeros")
        with pytest.raises(TypeError, match="same dtype"):
            ops.shift_shifts_backward(g.double(), g, s, "zeros")
        with pytest.raises(ValueError, match="shifts must have shape"):
            ops.shift_input_backward(g, torch.zeros(3, 1), "zeros", "active")


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_cuda_equals_cpu(ndim, padding_mode, mode):
    x = torch.randn(SHAPES[ndim], dtype=torch.float64, requires_grad=True)
    for seed, spread in enumerate((1.5, 2.5 * max(x.shape[2:]), 1e9)):
        s = random_shifts(x.shape[1], ndim, spread, seed).requires_grad_()
        testing.check_cpu_cuda(lambda a, b: lo.shift(a, b, padding_mode, mode), [x, s], atol=1e-12, rtol=1e-12)
    halves = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5] * 3, dtype=torch.float64)[: x.shape[1] * ndim]
    s = halves.view(x.shape[1], ndim)
    assert torch.equal(lo.shift(x.detach().cuda(), s.cuda(), padding_mode, mode).cpu(), lo.shift(x.detach(), s, padding_mode, mode))
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        y, t = x.detach().to(dtype), s.to(dtype)
        torch.testing.assert_close(lo.shift(y.cuda(), t.cuda(), padding_mode, mode).cpu(), lo.shift(y, t, padding_mode, mode), atol=1e-2, rtol=1e-2)


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_gradcheck_opcheck_compile_and_nan():
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    s = torch.tensor([[0.3, -1.6], [2.2, 0.7]], dtype=torch.float64, device="cuda", requires_grad=True)
    testing.check_gradcheck(lambda a, b: lo.shift(a, b, "reflect", "active"), [x, s], gradgrad=True)
    testing.check_opcheck(ops.shift.default, (x, s, "symmetric", "sparse"))
    testing.check_opcheck(ops.shift_input_backward.default, (x, s, "border", "active"))
    testing.check_opcheck(ops.shift_shifts_backward.default, (x, x.detach().sin(), s, "periodic"))
    testing.check_compile(lambda a, b: lo.shift(a, b, "periodic", "active"), [x, s])
    bad = torch.tensor([[float("nan"), 0.0], [1.0, 2.0]], device="cuda", dtype=torch.float64)
    out = lo.shift(x.detach(), bad, "reflect", "active")
    assert out[:, 0].isnan().all() and torch.isfinite(out[:, 1]).all()


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_shift_gradient_is_deterministic_on_a_large_input():
    x = torch.randn(8, 16, 64, 72, device="cuda", requires_grad=True)
    s = (torch.rand(16, 2, device="cuda") * 6 - 3).requires_grad_()
    g = torch.randn_like(x)
    first = torch.autograd.grad(lo.shift(x, s, "reflect", "active"), (x, s), g)
    second = torch.autograd.grad(lo.shift(x, s, "reflect", "active"), (x, s), g)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    xc, sc = x.detach().cpu().double().requires_grad_(), s.detach().cpu().double().requires_grad_()
    ref = torch.autograd.grad(lo.shift(xc, sc, "reflect", "active"), (xc, sc), g.cpu().double())
    torch.testing.assert_close(first[1].cpu().double(), ref[1], atol=1e-2, rtol=1e-4)
