"""The pad op's ``polynomial`` mode: Lagrange extrapolation of degree ``order``."""

from fractions import Fraction

import numpy as np
import pytest
import torch

import learnable_ops as lo
from learnable_ops import testing

SHAPES = {1: (2, 3, 9), 2: (2, 2, 8, 9), 3: (1, 2, 6, 7, 8)}


def lagrange_weight(order: int, i: int, t: int) -> Fraction:
    """l_i(t) on the nodes 0..order, in exact rational arithmetic."""
    w = Fraction(1)
    for m in range(order + 1):
        if m != i:
            w *= Fraction(t - m, i - m)
    return w


def axis_matrix(n: int, before: int, after: int, order: int, step: int) -> torch.Tensor:
    """(n + before + after, n) float64 matrix of one padded axis, built plainly:
    every padded coordinate p outside [0, n) takes the order + 1 samples of its own
    residue class mod step nearest to the edge, at grid distance ceil(d / step)."""
    rows = []
    for p in range(-before, n + after):
        row = [Fraction(0)] * n
        if 0 <= p < n:
            row[p] = Fraction(1)
        else:
            same_class = [j for j in range(n) if (j - p) % step == 0]
            nodes = same_class[: order + 1] if p < 0 else same_class[::-1][: order + 1]
            distance = abs(p - nodes[0]) // step
            for i, j in enumerate(nodes):
                row[j] += lagrange_weight(order, i, -distance)
        rows.append([float(v) for v in row])
    return torch.tensor(rows, dtype=torch.float64)


def reference_pad(x, pad, order, step):
    """Applies the per-axis matrices one dimension after the other (crops afterwards)."""
    nsp = x.dim() - 2
    out = x
    for k in range(nsp):
        dim = 2 + k
        before, after = pad[2 * (nsp - 1 - k)], pad[2 * (nsp - 1 - k) + 1]
        n = x.shape[dim]
        m = axis_matrix(n, max(before, 0), max(after, 0), order[k], step[k]).to(x)
        m = m[max(-before, 0): m.shape[0] - max(-after, 0)]
        out = torch.movedim(torch.tensordot(out, m, dims=([dim], [1])), -1, dim)
    return out


def test_published_weights_k3_k5_k7():
    # The table of the DiffConv2d paper: the weights for d = 1..p with order K - 1.
    x = torch.eye(7, dtype=torch.float64).view(7, 1, 7)
    expected = {
        (2, 1): [3, -3, 1],
        (4, 1): [5, -10, 10, -5, 1],
        (4, 2): [15, -40, 45, -24, 5],
        (6, 1): [7, -21, 35, -35, 21, -7, 1],
        (6, 2): [28, -112, 210, -224, 140, -48, 7],
        (6, 3): [84, -378, 756, -840, 540, -189, 28],
    }
    for (order, d), weights in expected.items():
        # Padding the unit vectors e_j gives the weight of sample j in each padded position.
        padded = lo.pad(x[: order + 1, :, : order + 1], [d, 0], "polynomial", order=order)
        assert padded[:, 0, 0].tolist() == weights


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_exact_on_polynomials_of_degree_at_most_order(nsp):
    rng = np.random.default_rng(nsp)
    for order in (0, 1, 2, 4):
        shape = list(SHAPES[nsp])
        grids = []  # input coordinates per axis
        for k in range(nsp):
            shape[2 + k] = max(shape[2 + k], order + 1)
        pad = [int(v) for v in rng.integers(0, 6, size=2 * nsp)]
        out_coords = []
        for k in range(nsp):
            n = shape[2 + k]
            before, after = pad[2 * (nsp - 1 - k)], pad[2 * (nsp - 1 - k) + 1]
            grids.append(torch.arange(n, dtype=torch.float64))
            out_coords.append(torch.arange(-before, n + after, dtype=torch.float64))
        coef = torch.randn(nsp, order + 1, dtype=torch.float64)

        def field(coords):
            # Sum over axes of a degree-`order` polynomial, times a product term.
            mesh = torch.meshgrid(*coords, indexing="ij")
            total = sum(sum(coef[k, e] * (mesh[k] / 4) ** e for e in range(order + 1)) for k in range(nsp))
            prod = 1.0
            for k in range(nsp):
                prod = prod * (mesh[k] / 4) ** min(order, 1)
            return total + prod

        spatial = field(grids)
        x = spatial.expand(*shape[:2], *spatial.shape).contiguous()
        got = lo.pad(x, pad, "polynomial", order=order)
        want = field(out_coords).expand_as(got)
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


def test_dilation_extrapolates_each_residue_class():
    # A different quadratic on each of the 3 residue classes is reproduced exactly.
    n, step = 12, 3
    p = torch.arange(-7, n + 5, dtype=torch.float64)
    coefs = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.25, -0.125], [-1.0, 1.0, 0.75]], dtype=torch.float64)
    f = lambda q: sum(coefs[q.long() % step, e] * q**e for e in range(3))  # noqa: E731
    x = f(torch.arange(n, dtype=torch.float64)).view(1, 1, n)
    torch.testing.assert_close(lo.pad(x, [7, 5], "polynomial", order=2, dilation=step)[0, 0], f(p))


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_matches_reference_values_and_adjoint(nsp):
    rng = np.random.default_rng(10 + nsp)
    x = torch.randn(SHAPES[nsp], dtype=torch.float64, requires_grad=True)
    for trial in range(4):
        order = [int(v) for v in rng.integers(0, 3, size=nsp)]
        step = [int(v) for v in rng.integers(1, 3, size=nsp)] if trial % 2 else [1] * nsp
        pad = []
        for k in reversed(range(nsp)):
            pad += [int(v) for v in rng.integers(-2, 7, size=2)]
        testing.assert_matches_reference(
            lambda t: lo.pad(t, pad, "polynomial", order=order, dilation=step),
            lambda t: reference_pad(t, pad, order, step),
            [x],
        )


def test_pad_far_beyond_the_input():
    x = torch.randn(1, 2, 5, dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(
        lambda t: lo.pad(t, [23, 17], "polynomial", order=1),
        lambda t: reference_pad(t, [23, 17], [1], [1]),
        [x],
    )


def test_gradcheck():
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    testing.check_gradcheck(lambda t: lo.pad(t, [3, -1, 2, 4], "polynomial", order=[2, 1]), [x], gradgrad=True)
    testing.check_gradcheck(lambda t: lo.pad(t, [3, 2, 1, 1], "polynomial", order=1, dilation=2), [x], gradgrad=True)


def test_opcheck():
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    testing.check_opcheck(torch.ops.learnable_ops.pad.default, (x, [2, 3, -1, 4], "polynomial", [2, 1], [1, 2]))
    g = torch.randn(2, 3, 9, 12, dtype=torch.float64, requires_grad=True)
    testing.check_opcheck(
        torch.ops.learnable_ops.pad_backward.default, (g, [2, 3, 6, 7], [2, 3, -1, 4], "polynomial", [2, 1], [1, 2])
    )


def test_compile_fullgraph():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    testing.check_compile(lambda t: lo.pad(t.sin(), [2, 2, 1, 1], "polynomial", order=2) * 2, [x])


def test_thread_count_independent():
    x = torch.randn(4, 8, 33, 47, requires_grad=True)
    testing.check_thread_independence(lambda t: lo.pad(t, [3, 6, 2, 3], "polynomial", order=[2, 4]), [x])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    x = torch.rand(2, 3, 6, 7)
    pad = [1, 1, 1, 1]
    ref = lo.pad(x, pad, "polynomial", order=2)
    torch.testing.assert_close(lo.pad(x.to(dtype), pad, "polynomial", order=2).float(), ref, atol=0.1, rtol=0.05)
    g = torch.rand(ref.shape)
    want = torch.ops.learnable_ops.pad_backward(g, list(x.shape), pad, "polynomial", [2], [1])
    got = torch.ops.learnable_ops.pad_backward(g.to(dtype), list(x.shape), pad, "polynomial", [2], [1])
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)


def test_layouts_and_empty_batch():
    x = torch.randn(2, 6, 5, 7)
    pad = [2, 3, 1, 2]
    ref = lo.pad(x, pad, "polynomial", order=2)
    assert torch.equal(lo.pad(x.to(memory_format=torch.channels_last), pad, "polynomial", order=2), ref)
    assert torch.equal(lo.pad(x[:, ::2], pad, "polynomial", order=2), ref[:, ::2])
    empty = torch.randn(0, 3, 5, 7, requires_grad=True)
    out = lo.pad(empty, pad, "polynomial", order=2)
    assert out.shape == (0, 3, 8, 12)
    out.sum().backward()
    assert empty.grad.shape == empty.shape


class TestBadInput:
    def test_order_required(self):
        with pytest.raises(ValueError, match="order is required"):
            lo.pad(torch.randn(1, 1, 5), [1, 1], "polynomial")
        with pytest.raises(ValueError, match="order is required"):
            torch.ops.learnable_ops.pad(torch.randn(1, 1, 5), [1, 1], "polynomial")

    def test_order_for_an_index_mode(self):
        with pytest.raises(ValueError, match="apply to mode 'polynomial' only"):
            lo.pad(torch.randn(1, 1, 5), [1, 1], "reflect", order=2)
        with pytest.raises(ValueError, match="polynomial' only"):
            torch.ops.learnable_ops.pad(torch.randn(1, 1, 5), [1, 1], "zeros", None, [2])

    def test_input_too_short(self):
        with pytest.raises(ValueError, match="needs at least 3 samples"):
            lo.pad(torch.randn(1, 1, 2), [1, 0], "polynomial", order=2)
        with pytest.raises(ValueError, match="needs at least 6 samples"):
            lo.pad(torch.randn(1, 1, 5, 9), [0, 0, 0, 1], "polynomial", order=2, dilation=2)
        with pytest.raises(ValueError, match="needs at least 3 samples"):
            torch.ops.learnable_ops.pad(torch.randn(1, 1, 2), [0, 1], "polynomial", [2])
        # Cropping a short axis needs no samples to extrapolate from.
        assert lo.pad(torch.randn(1, 1, 2, 5), [1, 1, -1, 0], "polynomial", order=2).shape == (1, 1, 1, 7)

    def test_bad_order_and_dilation(self):
        with pytest.raises(ValueError, match="order must be >= 0"):
            lo.pad(torch.randn(1, 1, 5), [1, 1], "polynomial", order=-1)
        with pytest.raises(ValueError, match="dilation must be >= 1"):
            lo.pad(torch.randn(1, 1, 5), [1, 1], "polynomial", order=1, dilation=0)
        with pytest.raises(ValueError, match="order must be an int or have 2 entries"):
            lo.pad(torch.randn(1, 1, 5, 5), [1, 1, 1, 1], "polynomial", order=[1, 1, 1])
        with pytest.raises(ValueError, match="order must have 1 or 2 entries"):
            torch.ops.learnable_ops.pad(torch.randn(1, 1, 5, 5), [1, 1, 1, 1], "polynomial", [1, 1, 1])
        with pytest.raises(TypeError, match="order must be an int or a sequence of ints"):
            lo.pad(torch.randn(1, 1, 5), [1, 1], "polynomial", order=1.5)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_cuda_equals_cpu(nsp):
    rng = np.random.default_rng(5)
    x = torch.randn(SHAPES[nsp], dtype=torch.float64, requires_grad=True)
    for trial in range(4):
        order = [int(v) for v in rng.integers(0, 3, size=nsp)]
        step = [int(v) for v in rng.integers(1, 3, size=nsp)] if trial % 2 else [1] * nsp
        pad = [int(v) for v in rng.integers(-2, 7, size=2 * nsp)]
        testing.check_cpu_cuda(lambda t: lo.pad(t, pad, "polynomial", order=order, dilation=step), [x])
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        y = x.detach().to(dtype)
        torch.testing.assert_close(
            lo.pad(y.cuda(), pad, "polynomial", order=order, dilation=step).cpu(),
            lo.pad(y, pad, "polynomial", order=order, dilation=step),
            atol=1e-2 if dtype != torch.float32 else 1e-5,
            rtol=1e-2,
        )


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_cuda_split_forward_equals_flat(monkeypatch, dtype):
    # LEARNABLE_OPS_PAD_POLY_SPLIT=1 (the copy box, then the ring) gives the flat kernel's
    # result bit for bit on the device: DiffConv2d's shapes (K = 3 and 7), crops, dilation,
    # 1D and 3D pads (an unpadded D axis takes the split, a padded one the flat kernel).
    gen = torch.Generator().manual_seed(7)
    cases = [((2, 3, 40, 70), [1, 1, 1, 1], [2], None), ((2, 3, 40, 70), [3, 3, 3, 3], [6], None),
             ((1, 2, 17, 33), [-2, 5, 4, 0], [2, 1], [1, 2]), ((3, 2, 50), [4, 7], [3], [2]),
             ((1, 2, 3, 9, 12), [2, 2, 1, 1, 0, 0], [1, 2, 0], None), ((1, 2, 4, 9, 12), [1] * 6, [1], None)]
    for shape, pad, order, dilation in cases:
        x = torch.randn(shape, generator=gen, dtype=torch.float64).to(device="cuda", dtype=dtype)
        monkeypatch.setenv("LEARNABLE_OPS_PAD_POLY_SPLIT", "1")
        split = lo.pad(x, pad, "polynomial", order=order, dilation=dilation)
        monkeypatch.setenv("LEARNABLE_OPS_PAD_POLY_SPLIT", "0")
        flat = lo.pad(x, pad, "polynomial", order=order, dilation=dilation)
        assert torch.equal(split, flat), (shape, pad, order, dilation)


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_opcheck_and_gradcheck():
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, device="cuda", requires_grad=True)
    testing.check_opcheck(torch.ops.learnable_ops.pad.default, (x, [2, 3, -1, 4], "polynomial", [2, 1], [1, 2]))
    g = torch.randn(2, 3, 9, 12, dtype=torch.float64, device="cuda", requires_grad=True)
    testing.check_opcheck(
        torch.ops.learnable_ops.pad_backward.default, (g, [2, 3, 6, 7], [2, 3, -1, 4], "polynomial", [2, 1], [1, 2])
    )
    testing.check_gradcheck(lambda t: lo.pad(t, [3, -1, 2, 4], "polynomial", order=[2, 1]), [x], gradgrad=True)
