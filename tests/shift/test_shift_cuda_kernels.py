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


# The fused backward (shift_backward) takes, in order: the plane kernel (1D/2D planes whose
# three plane buffers fit 48 KiB of shared memory: its input gradient is the adjoint one axis
# at a time, equal to shift_input_backward up to rounding); the staged kernel (half types,
# planes up to 40 KiB: bit-identical input gradient); the two separate kernels. The shift
# gradient always sums in another order than shift_shifts_backward (equal up to rounding).
ops = torch.ops.learnable_ops
PLANE_BWD, STAGED_BWD, SEPARATE_BWD = "shift_plane_backward_kernel", "shift_backward_kernel<", "shift_input_backward_kernel"


def _gx_tolerance(g, dtype):
    # The adjoint sums up to a few hundred grad_output values per input (border edges of
    # large shifts) in the accumulation type, then rounds to dtype.
    acc_eps = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps
    g_max = float(g.double().abs().max()) if g.numel() else 0.0
    return dict(atol=64 * acc_eps * g_max * max(g.shape[2:]), rtol=2 * torch.finfo(dtype).eps)


def _fused_and_separate(g, x, s, padding_mode, mode):
    fused = ops.shift_backward.default(g, x, s, padding_mode, mode)
    separate = (
        ops.shift_input_backward.default(g, s, padding_mode, mode),
        ops.shift_shifts_backward.default(g, x, s, padding_mode),
    )
    return fused, separate


def _check_fused(g, x, s, padding_mode, mode):
    (gx, gs), (ex, es) = _fused_and_separate(g, x, s, padding_mode, mode)
    torch.testing.assert_close(gx, ex, equal_nan=True, **_gx_tolerance(g, gx.dtype))
    assert gs.dtype == es.dtype and gs.shape == es.shape
    # Both sum N products in the accumulation type (float for half types), in another order:
    # rounding relative to the sum of their magnitudes, then the rounding to the shifts' dtype.
    eps = torch.finfo(torch.float64 if x.dtype == torch.float64 else torch.float32).eps
    x_max = float(x.double().abs().max()) if x.numel() else 0.0
    scale = float(g.double().abs().sum()) * x_max / max(1, s.shape[0])
    torch.testing.assert_close(
        gs.double(), es.double(), atol=256 * eps * scale, rtol=2 * torch.finfo(gs.dtype).eps, equal_nan=True
    )
    again = ops.shift_backward.default(g, x, s, padding_mode, mode)
    assert torch.equal(again[0], gx) and torch.equal(again[1], gs), "fused backward is not deterministic"


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
@pytest.mark.parametrize("shape", EDGE_SHAPES + [(2, 3, 56, 56)], ids=str)
def test_cuda_fused_backward_equals_separate_ops(shape, padding_mode, mode):
    x = torch.randn(shape, dtype=torch.float64, device="cuda")
    g = torch.randn(shape, dtype=torch.float64, device="cuda")
    ndim = len(shape) - 2
    for s in shift_sets(shape[1], ndim, max(shape[2:])):
        _check_fused(g, x, s.cuda(), padding_mode, mode)
        cpu = ops.shift_backward.default(g.cpu(), x.cpu(), s, padding_mode, mode)
        cuda = ops.shift_backward.default(g, x, s.cuda(), padding_mode, mode)
        for a, b in zip(cuda, cpu):
            torch.testing.assert_close(a.cpu(), b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("shape", [(4, 8, 56, 56), (2, 3, 5, 9), (2, 3, 7, 1), (2, 3, 1, 7), (2, 4, 8, 8, 8), (2, 3, 33)], ids=str)
def test_cuda_fused_backward_low_precision_and_staging(shape, mode, dtype):
    # 56x56: 16-byte aligned planes (vector staging); odd widths: planes after the first
    # are unaligned (scalar staging).
    x = torch.randn(shape, device="cuda").to(dtype)
    g = torch.randn(shape, device="cuda").to(dtype)
    s = ((torch.rand(shape[1], len(shape) - 2, device="cuda") * 2 - 1) * 2.5).to(dtype)
    for padding_mode in lo.PAD_MODES:
        _check_fused(g, x, s, padding_mode, mode)


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
def test_cuda_fused_backward_unaligned_input(mode):
    # Tensors that start 4 bytes after a 16-byte boundary: the staging falls back to scalar loads.
    shape = (2, 4, 16, 16)
    n = 2 * 4 * 16 * 16
    x = torch.randn(n + 1, device="cuda")[1:].view(shape)
    g = torch.randn(n + 1, device="cuda")[1:].view(shape)
    assert x.is_contiguous() and x.data_ptr() % 16 != 0
    s = torch.tensor([[0.4, -1.6], [2.5, 0.7], [-3.2, 1.0], [17.3, -40.5]], device="cuda")
    for padding_mode in lo.PAD_MODES:
        _check_fused(g, x, s, padding_mode, mode)
        expected = ops.shift_backward.default(g.cpu(), x.cpu(), s.cpu(), padding_mode, mode)
        got = ops.shift_backward.default(g, x, s, padding_mode, mode)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a.cpu(), b, atol=1e-4, rtol=1e-4)


def _kernel_names(fn):
    return " ".join(testing.cuda_kernels(fn)[1])


@pytest.mark.parametrize(
    "shape, dtype, kernel",
    [
        ((2, 3, 56, 56), torch.float32, PLANE_BWD),  # 3 x 12.25 KiB
        ((1, 2, 64, 64), torch.float32, SEPARATE_BWD),  # 48 KiB of planes plus the tables: over
        ((1, 2, 60, 64), torch.float32, PLANE_BWD),
        ((1, 2, 2000), torch.float32, PLANE_BWD),  # 1D
        ((1, 2, 80, 128), torch.float32, SEPARATE_BWD),  # over the plane budget, float32
        ((1, 2, 80, 128), torch.bfloat16, STAGED_BWD),  # half type within the staged budget
        ((1, 2, 120, 120), torch.bfloat16, STAGED_BWD),
        ((1, 2, 150, 150), torch.bfloat16, SEPARATE_BWD),
        ((2, 3, 8, 8, 8), torch.float32, SEPARATE_BWD),  # 3D
        ((2, 3, 8, 8, 8), torch.float16, STAGED_BWD),
        ((1, 2, 20011), torch.float32, SEPARATE_BWD),
    ],
    ids=str,
)
def test_cuda_fused_backward_kernel_choice(shape, dtype, kernel):
    x = torch.randn(shape, device="cuda").to(dtype)
    g = torch.randn(shape, device="cuda").to(dtype)
    s = ((torch.rand(shape[1], len(shape) - 2, device="cuda") * 2 - 1) * 3).to(torch.float64)
    for mode in lo.SHIFT_MODES:
        names = _kernel_names(lambda: _check_fused(g, x, s, "reflect", mode))
        for k in (PLANE_BWD, STAGED_BWD):
            assert (k in names) == (k == kernel), (k, names)
        expected = ops.shift_backward.default(g.cpu().double(), x.cpu().double(), s.cpu(), "reflect", mode)
        got = ops.shift_backward.default(g, x, s, "reflect", mode)
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        for a, b in zip(got, expected):
            torch.testing.assert_close(a.double().cpu(), b, atol=tol * max(1.0, float(b.abs().max())), rtol=tol)


@pytest.mark.parametrize(
    "shape, dtype, plane",
    [((2, 3, 56, 56), torch.float32, True), ((2, 3, 56, 56), torch.bfloat16, True), ((1, 2, 3000), torch.float64, True),
     ((2, 3, 23, 29), torch.float32, True), ((2, 3, 9, 8), torch.bfloat16, True),  # vectors across rows; one per row
     ((1, 2, 120, 120), torch.float32, False), ((2, 3, 4, 5, 6), torch.float32, False)],
    ids=str,
)
def test_cuda_forward_kernel_choice(shape, dtype, plane):
    # The plane forward (1D/2D planes within 48 KiB) is bit-identical to the general kernel;
    # compared here with the CPU in float64 terms.
    x = torch.randn(shape, device="cuda").to(dtype)
    s = (torch.rand(shape[1], len(shape) - 2, device="cuda", dtype=torch.float64) * 2 - 1) * 2.5
    for mode in lo.SHIFT_MODES:
        for padding_mode in lo.PAD_MODES:
            names = _kernel_names(lambda: lo.shift(x, s, padding_mode, mode))
            assert ("shift_plane_forward_kernel" in names) == plane, names
            got = lo.shift(x, s, padding_mode, mode)
            expected = lo.shift(x.cpu(), s.cpu(), padding_mode, mode)
            if mode == "sparse":  # a gather: exact
                assert torch.equal(got.cpu(), expected)
            else:
                tol = 1e-2 if dtype == torch.bfloat16 else 1e-6
                torch.testing.assert_close(got.cpu(), expected, atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("width", [56, 29])
def test_cuda_sparse_plane_forward_every_row_offset(dtype, width):
    # The plane forward reads a row's interior vectors from shared memory as aligned 16-byte
    # vectors shifted into place: every column shift modulo the vector (and beyond the row),
    # rows of whole vectors (56) and not (29), a staged plane read element-wise (a storage
    # offset of one element), and shifts read in place in float32/float64 with strides or
    # converted (float16): all exact against the CPU.
    channels = 20
    cols = torch.arange(channels, dtype=torch.float64) - 9
    cols[0], cols[1] = 60, -61  # beyond the row
    rows = torch.tensor([(-1) ** c * (c % 4) for c in range(channels)], dtype=torch.float64)
    base = torch.stack([rows, cols], 1)
    x = torch.randn(2, channels, 7, width, device="cuda").to(dtype)
    offset = torch.randn(x.numel() + 1, device="cuda").to(dtype)[1:].view_as(x)
    offset.copy_(x)
    shift_variants = [base.float(), base, base.t().contiguous().t(), base.half(), base.float().t().contiguous().t()]
    for padding_mode in lo.PAD_MODES:
        expected = lo.shift(x.cpu(), base, padding_mode, "sparse")
        for s in shift_variants:
            assert torch.equal(lo.shift(x, s.cuda(), padding_mode, "sparse").cpu(), expected)
        assert torch.equal(lo.shift(offset, base.cuda(), padding_mode, "sparse").cpu(), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_autograd_takes_fused_backward(dtype):
    # On CUDA autograd takes the fused op for both gradients (ops/shift.py _shift_backward);
    # a 2D 56x56 plane runs its plane kernel.
    x = torch.randn(2, 8, 56, 56, device="cuda").to(dtype).requires_grad_()
    s = ((torch.rand(8, 2, device="cuda") * 2 - 1) * 1.5).requires_grad_()
    grad = torch.randn(x.shape, device="cuda").to(dtype)
    for mode in lo.SHIFT_MODES:
        grads = []
        names = _kernel_names(lambda: grads.extend(torch.autograd.grad(lo.shift(x, s, "zeros", mode), (x, s), grad)))
        gx, gs = grads
        assert PLANE_BWD in names and SEPARATE_BWD not in names
        ex, es = ops.shift_backward.default(grad, x.detach(), s.detach(), "zeros", mode)
        assert torch.equal(gx, ex)
        torch.testing.assert_close(gs, es)


def test_cuda_fused_backward_opcheck_and_nan():
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    g = torch.randn(1, 2, 4, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    s = torch.tensor([[0.3, -1.6], [2.2, 0.7]], dtype=torch.float64, device="cuda", requires_grad=True)
    testing.check_opcheck(ops.shift_backward.default, (g, x, s, "periodic", "active"))
    testing.check_opcheck(ops.shift_backward.default, (g, x, s, "reflect", "sparse"))
    bad = torch.tensor([[float("nan"), 0.0], [1.0, 2.0]], device="cuda", dtype=torch.float64)
    gx, gs = ops.shift_backward.default(g.detach(), x.detach(), bad, "reflect", "active")
    assert gx[:, 0].isnan().all() and torch.isfinite(gx[:, 1]).all()
    assert gs[0].isnan().all() and torch.isfinite(gs[1]).all()


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
def test_cuda_plane_backward_fold_table_variant(padding_mode, mode, monkeypatch):
    # LEARNABLE_OPS_SHIFT_FOLD_TABLE=1 (the default) takes the plane backward whose fold targets
    # come from a shared table (8 per side, inline beyond): the same values as without it (=0) up
    # to rounding, and as the CPU. Shifts up to 20 reach past the table on a 23 x 29 plane.
    x = torch.randn(2, 5, 23, 29, device="cuda", dtype=torch.float64)
    g = torch.randn(2, 5, 23, 29, device="cuda", dtype=torch.float64)
    s = torch.tensor([[0.4, -1.6], [2.5, 0.7], [-3.2, 1.0], [17.3, -20.5], [-19.5, 9.25]], device="cuda",
                     dtype=torch.float64)
    monkeypatch.setenv("LEARNABLE_OPS_SHIFT_BWD_SPLIT", "0")
    monkeypatch.setenv("LEARNABLE_OPS_SHIFT_FOLD_TABLE", "0")
    default = ops.shift_backward.default(g, x, s, padding_mode, mode)
    monkeypatch.setenv("LEARNABLE_OPS_SHIFT_FOLD_TABLE", "1")
    names = _kernel_names(lambda: ops.shift_backward.default(g, x, s, padding_mode, mode))
    assert "shift_plane_backward_kernel<double, " + ("true" if mode == "active" else "false") + ", true, false>" in names, names
    table = ops.shift_backward.default(g, x, s, padding_mode, mode)
    cpu = ops.shift_backward.default(g.cpu(), x.cpu(), s.cpu(), padding_mode, mode)
    for a, b, c in zip(table, default, cpu):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(a.cpu(), c, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("fold_table", ["0", "1"])
@pytest.mark.parametrize(
    "shape, dtype",
    [((2, 5, 56, 56), torch.float32), ((2, 5, 56, 56), torch.bfloat16), ((2, 5, 23, 30), torch.float64),
     ((1, 5, 7, 8), torch.float16), ((2, 5, 23, 29), torch.float32), ((1, 5, 96), torch.float32)],
    ids=str,
)
def test_cuda_plane_backward_split_variant(shape, dtype, fold_table, monkeypatch):
    # LEARNABLE_OPS_SHIFT_BWD_SPLIT=1 takes the plane backward whose pass 1 runs as two passes (T
    # in the input plane's shared memory) and whose row ends run in a loop of their own (widths
    # that are whole 16-byte vectors; 29 is not): the same values as the default variant, and as
    # the CPU. Shifts up to 20 make every element of the narrow planes an edge element.
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).cuda()
    g = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype).cuda()
    ndim = len(shape) - 2
    s = torch.tensor([[0.4, -1.6], [2.5, 0.7], [-3.2, 1.0], [17.3, -20.5], [-19.5, 9.25]],
                     dtype=torch.float64)[:, 2 - ndim:].cuda()
    monkeypatch.setenv("LEARNABLE_OPS_SHIFT_FOLD_TABLE", fold_table)
    tol = {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 2e-2)
    for mode in lo.SHIFT_MODES:
        for padding_mode in lo.PAD_MODES:
            monkeypatch.setenv("LEARNABLE_OPS_SHIFT_BWD_SPLIT", "0")
            default = ops.shift_backward.default(g, x, s, padding_mode, mode)
            monkeypatch.setenv("LEARNABLE_OPS_SHIFT_BWD_SPLIT", "1")
            names = _kernel_names(lambda: ops.shift_backward.default(g, x, s, padding_mode, mode))
            assert "shift_plane_backward_kernel<" in names and ", true>" in names, names
            split = ops.shift_backward.default(g, x, s, padding_mode, mode)
            cpu = ops.shift_backward.default(g.cpu().double(), x.cpu().double(), s.cpu(), padding_mode, mode)
            for a, b, c in zip(split, default, cpu):
                torch.testing.assert_close(a, b, atol=tol, rtol=tol)
                torch.testing.assert_close(a.double().cpu(), c, atol=tol * max(1.0, float(c.abs().max())), rtol=tol)


def test_cuda_plane_backward_defaults(monkeypatch):
    # Unset switches take the measured defaults: the split pass 1 with the fold table.
    monkeypatch.delenv("LEARNABLE_OPS_SHIFT_BWD_SPLIT", raising=False)
    monkeypatch.delenv("LEARNABLE_OPS_SHIFT_FOLD_TABLE", raising=False)
    x = torch.randn(2, 3, 20, 24, device="cuda")
    g = torch.randn(2, 3, 20, 24, device="cuda")
    s = torch.tensor([[0.4, -1.6], [2.5, 0.7], [-3.2, 1.0]], device="cuda", dtype=torch.float64)
    names = _kernel_names(lambda: ops.shift_backward.default(g, x, s, "reflect", "active"))
    assert "shift_plane_backward_kernel<float, true, true, true>" in names, names
