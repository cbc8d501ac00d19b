"""CUDA shift kernels against the CPU ones on the shapes and shifts that reach each of their paths.

The CUDA kernels read at a constant offset where every tap (or preimage) of an element
lies inside the plane, and go through the padding map elsewhere; planes larger than
one block's chunk are split across blocks (and the shift-gradient partial sums with
them); 1D/2D/3D use their own instantiations, and planes of more than 2^28 elements
64-bit indices.
"""

import pytest
import torch

import learnable_ops as lo
from learnable_ops import testing

pytestmark = [pytest.mark.cuda, testing.requires_cuda]

EDGE_SHAPES = [
    (2, 3, 1),  # 1D, width 1
    (1, 2, 9),
    (1, 2, 20011),  # 1D, three chunks per plane
    (2, 3, 1, 1),
    (2, 2, 1, 7),
    (2, 2, 7, 1),  # width 1
    (2, 3, 5, 9),  # odd width
    (1, 2, 97, 101),  # two chunks per plane
    (0, 3, 5, 6),  # empty batch
    (1, 2, 1, 1, 1),
    (1, 2, 3, 1, 5),
    (1, 2, 4, 9, 11),
]


def shift_sets(channels, ndim, length):
    gen = torch.Generator().manual_seed(channels * 10 + ndim)

    def uniform(spread):
        return (torch.rand(channels, ndim, generator=gen, dtype=torch.float64) * 2 - 1) * spread

    return [
        torch.zeros(channels, ndim, dtype=torch.float64),
        uniform(0.45),
        uniform(1.5),
        uniform(3.5).round(),  # lattice points: one tap per axis in active mode
        uniform(2.5 * length),
        uniform(1e9),
    ]


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
@pytest.mark.parametrize("shape", EDGE_SHAPES, ids=str)
def test_cuda_equals_cpu_on_edge_shapes(shape, padding_mode, mode):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    ndim = len(shape) - 2
    for s in shift_sets(shape[1], ndim, max(shape[2:])):
        testing.check_cpu_cuda(
            lambda a, b: lo.shift(a, b, padding_mode, mode), [x, s.requires_grad_()], atol=1e-12, rtol=1e-12
        )


def _values_and_grads(x, s, padding_mode, mode, grad):
    x = x.detach().requires_grad_()
    s = s.detach().requires_grad_()
    out = lo.shift(x, s, padding_mode, mode)
    gx, gs = torch.autograd.grad(out, (x, s), grad)
    return out.detach(), gx, gs


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
def test_cuda_non_contiguous_input(padding_mode, mode):
    base = torch.randn(2, 6, 9, 14, dtype=torch.float64, device="cuda")
    s = torch.tensor([[0.4, -1.6], [2.5, 0.7], [-3.2, 1.0]], dtype=torch.float64, device="cuda")
    for x in (
        base[:, ::2, :, 1:12],  # strided channels, cropped width
        base[:, :3].contiguous(memory_format=torch.channels_last),
        base[:, :3].transpose(2, 3),
    ):
        assert not x.is_contiguous()
        grad = torch.randn(x.shape, dtype=torch.float64, device="cuda")
        got = _values_and_grads(x, s, padding_mode, mode, grad)
        expected = _values_and_grads(x.cpu(), s.cpu(), padding_mode, mode, grad.cpu())
        for a, b in zip(got, expected):
            torch.testing.assert_close(a.cpu(), b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
def test_cuda_low_precision_matches_float64(padding_mode, mode, dtype):
    # Same (rounded) inputs; the kernels accumulate in float, so the input gradient
    # and output are off by the output rounding, the shift gradient by float sums.
    x = torch.randn(3, 5, 23, 31, dtype=torch.float64).to(dtype)
    s = ((torch.rand(5, 2, dtype=torch.float64) * 2 - 1) * 2.5).to(dtype)
    grad = torch.randn(x.shape, dtype=torch.float64).to(dtype)
    got = _values_and_grads(x.cuda(), s.cuda(), padding_mode, mode, grad.cuda())
    expected = _values_and_grads(x.double(), s.double(), padding_mode, mode, grad.double())
    tol = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float32: 1e-5}[dtype]
    for a, b in zip(got, expected):
        assert a.dtype == dtype
        scale = b.abs().max().item()
        torch.testing.assert_close(a.cpu().double(), b, atol=tol * scale, rtol=tol)


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", ["zeros", "periodic"])
def test_cuda_wide_index_path(padding_mode, mode):
    # A plane of more than 2^28 elements takes the 64-bit index instantiations. In 1D
    # a shift is a roll (periodic) or a shifted copy (zeros).
    n = 268_500_011
    x = torch.randn(1, 1, n, device="cuda")
    grad = torch.randn(1, 1, n, device="cuda")
    s = torch.tensor([[-2.3]], dtype=torch.float64, device="cuda")

    def integer_shift(v, k):
        if padding_mode == "periodic":
            return torch.roll(v, k, dims=-1)
        out = torch.zeros_like(v)
        if k >= 0:
            out[..., k:] = v[..., : n - k]
        else:
            out[..., :k] = v[..., -k:]
        return out

    if mode == "sparse":
        taps = [(-2, 1.0)]
    else:
        taps = [(-3, 1 - 0.7), (-2, 0.7)]  # floor(-2.3) = -3, t = 0.7: (1 - t) x[i + 3] + t x[i + 2]
    out, gx, gs = _values_and_grads(x, s, padding_mode, mode, grad)
    expected = sum(w * integer_shift(x, k) for k, w in taps)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    del out, expected
    expected_gx = sum(w * integer_shift(grad, -k) for k, w in taps)
    torch.testing.assert_close(gx, expected_gx, atol=1e-5, rtol=1e-5)
    del gx, expected_gx
    # d/ds of (1 - t) x(i + 3) + t x(i + 2) at t = 0.7: x(i + 2) - x(i + 3).
    deriv = (integer_shift(x, -2).double() - integer_shift(x, -3).double()) * grad.double()
    expected_gs = deriv.sum()
    assert abs(gs.item() - expected_gs.item()) <= 1e-3 * deriv.abs().sum().item() ** 0.5 + 1e-6 * deriv.abs().sum().item()
