import numpy as np
import pytest
import torch
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops import testing

NUMPY_MODE = {"zeros": "constant", "border": "edge", "periodic": "wrap", "reflect": "reflect", "symmetric": "symmetric"}
SHAPES = {1: (2, 3, 5), 2: (2, 3, 4, 5), 3: (1, 2, 3, 4, 5)}


def numpy_pad(x: torch.Tensor, pad, mode):
    """numpy.pad in F.pad's argument order; negative amounts crop after padding."""
    a = x.detach().cpu().double().numpy()
    nsp = x.dim() - 2
    widths = [(0, 0)] * 2 + [(max(pad[2 * k], 0), max(pad[2 * k + 1], 0)) for k in reversed(range(nsp))]
    out = np.pad(a, widths, mode=NUMPY_MODE[mode])
    index = [slice(None)] * 2
    for k in reversed(range(nsp)):
        b, e = pad[2 * k], pad[2 * k + 1]
        index.append(slice(-min(b, 0), out.shape[x.dim() - 1 - k] + min(e, 0)))
    return torch.from_numpy(np.ascontiguousarray(out[tuple(index)]))


def random_pad(shape, rng, allow_crop=True):
    pad = []
    for size in reversed(shape[2:]):
        while True:
            b, e = (int(v) for v in rng.integers(-size + 1 if allow_crop else 0, 3 * size + 1, size=2))
            if size + b + e >= 1:
                break
        pad += [b, e]
    return pad


@pytest.mark.parametrize("mode", lo.PAD_MODES)
@pytest.mark.parametrize("nsp", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_equals_numpy_pad_exactly(mode, nsp, dtype):
    rng = np.random.default_rng(nsp * 10 + lo.PAD_MODES.index(mode))
    x = torch.randn(SHAPES[nsp], dtype=dtype)
    for _ in range(12):
        pad = random_pad(x.shape, rng)
        # Crops apply to the padded signal; numpy cannot crop, so compare on the pad part.
        if any(p < 0 for p in pad):
            got = lo.pad(x, pad, mode)
            full = lo.pad(x, [max(p, 0) for p in pad], mode)
            expected = numpy_pad(x, pad, mode).to(dtype)
            assert torch.equal(got, expected)
            assert got.shape[-1] <= full.shape[-1]
        else:
            assert torch.equal(lo.pad(x, pad, mode), numpy_pad(x, pad, mode).to(dtype))


@pytest.mark.parametrize("mode", lo.PAD_MODES)
def test_length_one_and_far_offsets(mode):
    x = torch.randn(1, 2, 1)
    assert torch.equal(lo.pad(x, [9, 4], mode), numpy_pad(x, [9, 4], mode).float())
    x = torch.randn(1, 1, 3)
    assert torch.equal(lo.pad(x, [20, 31], mode), numpy_pad(x, [20, 31], mode).float())


@pytest.mark.parametrize("mode", lo.PAD_MODES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(mode, dtype):
    x = torch.randn(2, 3, 6, 7)
    pad = [3, 8, -2, 5]
    torch.testing.assert_close(lo.pad(x.to(dtype), pad, mode).float(), lo.pad(x, pad, mode), atol=1e-2, rtol=1e-2)
    g = torch.randn(lo.pad(x, pad, mode).shape)
    ref = torch.ops.learnable_ops.pad_backward(g, list(x.shape), pad, mode)
    half = torch.ops.learnable_ops.pad_backward(g.to(dtype), list(x.shape), pad, mode)
    torch.testing.assert_close(half.float(), ref, atol=5e-2, rtol=2e-2)


def reference_pad(x, pad, mode):
    """Plain-PyTorch reference: an index_select per axis with numpy-derived indices."""
    out = x
    nsp = x.dim() - 2
    for k in range(nsp):
        dim = x.dim() - 1 - k
        n = x.shape[dim]
        idx = numpy_pad(torch.arange(n, dtype=torch.float64).view(1, 1, n), [pad[2 * k], pad[2 * k + 1]], "zeros" if mode == "zeros" else mode)
        ones = numpy_pad(torch.ones(1, 1, n, dtype=torch.float64), [pad[2 * k], pad[2 * k + 1]], mode)
        idx = idx.view(-1).long()
        mask = ones.view(-1).to(x.dtype)
        shape = [1] * x.dim()
        shape[dim] = -1
        out = out.index_select(dim, idx) * mask.view(shape)
    return out


@pytest.mark.parametrize("mode", lo.PAD_MODES)
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_gradient_is_the_adjoint(mode, nsp):
    rng = np.random.default_rng(7)
    x = torch.randn(SHAPES[nsp], dtype=torch.float64, requires_grad=True)
    for _ in range(3):
        pad = random_pad(x.shape, rng)
        testing.assert_matches_reference(lambda t: lo.pad(t, pad, mode), lambda t: reference_pad(t, pad, mode), [x])


@pytest.mark.parametrize("mode", lo.PAD_MODES)
def test_gradcheck(mode):
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    testing.check_gradcheck(lambda t: lo.pad(t, [5, -1, 2, 7], mode), [x], gradgrad=True)


@pytest.mark.parametrize("mode", lo.PAD_MODES)
def test_opcheck(mode):
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    testing.check_opcheck(torch.ops.learnable_ops.pad.default, (x, [2, 3, -1, 4], mode))
    g = torch.randn(2, 3, 7, 10, dtype=torch.float64, requires_grad=True)
    testing.check_opcheck(torch.ops.learnable_ops.pad_backward.default, (g, [2, 3, 4, 5], [2, 3, -1, 4], mode))


@pytest.mark.parametrize("mode", ["reflect", "symmetric"])
def test_compile_fullgraph(mode):
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)

    def f(t):
        return lo.pad(t.sin(), [4, 9, 2, 2], mode) * 2

    testing.check_compile(f, [x])


@pytest.mark.parametrize("mode", lo.PAD_MODES)
def test_thread_count_independent(mode):
    x = torch.randn(4, 8, 33, 47, requires_grad=True)
    testing.check_thread_independence(lambda t: lo.pad(t, [40, 3, 9, 70], mode), [x])


@pytest.mark.parametrize("mode", lo.PAD_MODES)
def test_layouts_and_empty_batch(mode):
    x = torch.randn(2, 6, 5, 7)
    pad = [2, 3, 1, 4]
    ref = lo.pad(x, pad, mode)
    assert torch.equal(lo.pad(x.to(memory_format=torch.channels_last), pad, mode), ref)
    assert torch.equal(lo.pad(x.transpose(2, 3).contiguous().transpose(2, 3), pad, mode), ref)
    assert torch.equal(lo.pad(x[:, ::2], pad, mode), ref[:, ::2])
    empty = torch.randn(0, 3, 5, 7, requires_grad=True)
    out = lo.pad(empty, pad, mode)
    assert out.shape == (0, 3, 10, 12)
    out.sum().backward()
    assert empty.grad.shape == empty.shape


@pytest.mark.parametrize("mode,torch_mode", [("zeros", "constant"), ("border", "replicate"), ("periodic", "circular"), ("reflect", "reflect")])
def test_agrees_with_F_pad(mode, torch_mode):
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64)
    pad = [3, 2, 4, 1]
    assert torch.equal(lo.pad(x, pad, mode), F.pad(x, pad, mode=torch_mode))


def test_aliases():
    x = torch.randn(1, 1, 4)
    assert torch.equal(lo.pad(x, [2, 2], "replicate"), lo.pad(x, [2, 2], "border"))
    assert torch.equal(lo.pad(x, [2, 2], "circular"), lo.pad(x, [2, 2], "periodic"))


class TestBadInput:
    def test_wrong_rank(self):
        with pytest.raises(ValueError, match="input must be a 3D, 4D or 5D"):
            lo.pad(torch.randn(3, 4), [1, 1], "zeros")
        with pytest.raises(ValueError, match="3D, 4D or 5D"):
            torch.ops.learnable_ops.pad(torch.randn(1, 1, 1, 1, 1, 3), [1] * 8, "zeros")

    def test_wrong_pad_length(self):
        with pytest.raises(ValueError, match="pad must have 4 entries"):
            lo.pad(torch.randn(1, 1, 3, 3), [1, 1], "zeros")
        with pytest.raises(ValueError, match="pad must have 2 entries"):
            torch.ops.learnable_ops.pad(torch.randn(1, 1, 3), [1, 1, 1, 1], "zeros")

    def test_unknown_mode_lists_valid_ones(self):
        with pytest.raises(ValueError, match="zeros, border, periodic, reflect, symmetric"):
            lo.pad(torch.randn(1, 1, 3), [1, 1], "mirror")
        with pytest.raises(ValueError, match="zeros, border, periodic, reflect, symmetric"):
            torch.ops.learnable_ops.pad(torch.randn(1, 1, 3), [1, 1], "mirror")

    def test_crop_to_nothing(self):
        with pytest.raises(ValueError, match="pad"):
            lo.pad(torch.randn(1, 1, 3), [-2, -1], "zeros")
        with pytest.raises(ValueError, match="at least one"):
            torch.ops.learnable_ops.pad(torch.randn(1, 1, 3), [-2, -1], "zeros")

    def test_integer_dtype(self):
        with pytest.raises(TypeError, match="input must be a floating-point tensor"):
            lo.pad(torch.arange(6).view(1, 2, 3), [1, 1], "zeros")
        with pytest.raises(TypeError, match="floating-point"):
            torch.ops.learnable_ops.pad(torch.arange(6).view(1, 2, 3), [1, 1], "zeros")

    def test_non_tensor_and_bad_pad_types(self):
        with pytest.raises(TypeError, match="input must be a torch.Tensor"):
            lo.pad([1.0, 2.0], [1, 1], "zeros")
        with pytest.raises(TypeError, match="pad must contain only ints"):
            lo.pad(torch.randn(1, 1, 3), [1.5, 1], "zeros")

    def test_grad_of_wrong_shape(self):
        with pytest.raises(ValueError, match="grad_output must have shape"):
            torch.ops.learnable_ops.pad_backward(torch.randn(1, 1, 4), [1, 1, 3], [1, 1], "zeros")


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("mode", lo.PAD_MODES)
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_cuda_equals_cpu(mode, nsp):
    rng = np.random.default_rng(3)
    x = torch.randn(SHAPES[nsp], dtype=torch.float64, requires_grad=True)
    for _ in range(4):
        pad = random_pad(x.shape, rng)
        # Values are copies (exact); gradients sum the same terms in another order.
        testing.check_cpu_cuda(lambda t: lo.pad(t, pad, mode), [x], atol=1e-13, rtol=1e-13)
        assert torch.equal(lo.pad(x.detach().cuda(), pad, mode).cpu(), lo.pad(x.detach(), pad, mode))
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        y = x.detach().to(dtype)
        assert torch.equal(lo.pad(y.cuda(), pad, mode).cpu(), lo.pad(y, pad, mode))


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("mode", lo.PAD_MODES + ("polynomial",))
def test_cuda_row_layouts(mode):
    # The CUDA kernels give each row a warp (rows wider than 16) or pack several
    # narrow rows per warp: every width class, including rows wider than one
    # pass of 32 lanes, several rows per block and a ragged last block.
    rng = np.random.default_rng(11)
    for width in (1, 2, 5, 16, 17, 31, 32, 33, 70, 130):
        for shape in ((2, 3, width), (1, 2, 7, width)):
            x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
            for _ in range(2):
                kw = {}
                if mode == "polynomial":
                    kw["order"] = [min(int(v), n - 1) for v, n in zip(rng.integers(0, 3, size=len(shape) - 2), shape[2:])]
                    pad = [int(v) for v in rng.integers(0, 7, size=2 * (len(shape) - 2))]
                else:
                    pad = random_pad(x.shape, rng)
                testing.check_cpu_cuda(lambda t: lo.pad(t, pad, mode, **kw), [x], atol=1e-12, rtol=1e-12)


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_opcheck_compile_and_bad_grad():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, device="cuda", requires_grad=True)
    testing.check_opcheck(torch.ops.learnable_ops.pad.default, (x, [2, 3, -1, 4], "symmetric"))
    testing.check_gradcheck(lambda t: lo.pad(t, [5, -1, 2, 7], "reflect"), [x], gradgrad=True)
    testing.check_compile(lambda t: lo.pad(t, [4, 9, 2, 2], "periodic"), [x])
    with pytest.raises(ValueError, match="grad_output must have shape"):
        torch.ops.learnable_ops.pad_backward(torch.randn(2, 3, 4, 11, device="cuda"), [2, 3, 4, 5], [3, 4, 0, 0], "reflect")


def cuda_matches_cpu(x, pad, mode, *, grad_tol=1e-12, **kw):
    """Forward values bit-identical (index modes copy), gradients close: the
    CUDA gather sums the same terms as the CPU kernel in another order."""
    want = lo.pad(x, pad, mode, **kw)
    got = lo.pad(x.cuda(), pad, mode, **kw).cpu()
    if mode == "polynomial":
        torch.testing.assert_close(got, want, atol=grad_tol, rtol=grad_tol)
    else:
        assert torch.equal(got, want), (mode, pad, x.shape)
    g = torch.randn(want.shape, dtype=x.dtype)
    order, dilation = kw.get("order"), kw.get("dilation")
    order = [order] if isinstance(order, int) else order
    want_grad = torch.ops.learnable_ops.pad_backward(g, list(x.shape), pad, mode, order, dilation)
    got_grad = torch.ops.learnable_ops.pad_backward(g.cuda(), list(x.shape), pad, mode, order, dilation).cpu()
    torch.testing.assert_close(got_grad, want_grad, atol=grad_tol, rtol=grad_tol)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("mode", lo.PAD_MODES + ("polynomial",))
def test_cuda_every_width_up_to_130(mode):
    # Four columns per thread: every remainder of the width modulo 4, output
    # widths with and without aligned vector stores, rows wider than a block.
    rng = np.random.default_rng(21)
    for width in range(1, 131):
        x = torch.randn(2, 3, 3, width, dtype=torch.float64)
        if mode == "polynomial":
            order = int(rng.integers(0, 3))
            pad = [int(v) for v in rng.integers(0, 5, size=2)] if width > order else [0, 0]
            pad += [int(v) for v in rng.integers(-1, 3, size=2)] if 3 > order else [0, 0]
            cuda_matches_cpu(x, pad, mode, grad_tol=1e-10, order=order)
        else:
            cuda_matches_cpu(x, random_pad(x.shape, rng), mode)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("mode", lo.PAD_MODES)
def test_cuda_3d_huge_pads_and_crops(mode):
    x = torch.randn(1, 2, 3, 4, 5, dtype=torch.float64)
    cuda_matches_cpu(x, [40, 37, 33, 50, 29, 31], mode)
    cuda_matches_cpu(x, [-2, -1, -1, -2, -1, 0], mode)
    cuda_matches_cpu(x, [-4, 60, 45, -3, 0, 17], mode)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("mode", lo.PAD_MODES + ("polynomial",))
def test_cuda_tables_that_do_not_fit_shared_memory(mode):
    # The per-block axis tables hold 16 KB; beyond that an axis is computed
    # inline. Output widths > 4096 overflow the forward table, long preimage
    # lists (border edges, many periods) and tall axes the backward ones.
    kw = {"order": 2} if mode == "polynomial" else {}
    for shape, pad in (
        ((1, 2, 3, 50), [3000, 2077, 1, 2]),
        ((1, 1, 5000, 7), [2, 3, 6, 1]),
        ((1, 1, 3, 3, 3000), [1, 4100, 0, 1, 2, 0]),
        ((2, 1, 4100), [-3, 5]),
    ):
        cuda_matches_cpu(torch.randn(shape, dtype=torch.float64), pad, mode, grad_tol=1e-9 if kw else 1e-12, **kw)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("mode", lo.PAD_MODES + ("polynomial",))
def test_cuda_layouts_and_half_precision(mode):
    kw = {"order": 1} if mode == "polynomial" else {}
    x = torch.randn(2, 6, 9, 12)
    pad = [2, 3, 1, 4]
    ref = lo.pad(x, pad, mode, **kw)
    xc = x.cuda()
    for layout in (xc.to(memory_format=torch.channels_last), xc.transpose(2, 3).contiguous().transpose(2, 3)):
        torch.testing.assert_close(lo.pad(layout, pad, mode, **kw).cpu(), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lo.pad(xc[:, ::2], pad, mode, **kw).cpu(), ref[:, ::2], atol=1e-5, rtol=1e-5)
    g = torch.randn(ref.shape)
    order = [1] if kw else None
    grad_ref = torch.ops.learnable_ops.pad_backward(g, list(x.shape), pad, mode, order)
    for dtype in (torch.float16, torch.bfloat16):
        got = lo.pad(x.to(dtype).cuda(), pad, mode, **kw).cpu()
        want = lo.pad(x.to(dtype), pad, mode, **kw)
        if kw:
            torch.testing.assert_close(got.float(), want.float(), atol=2e-2, rtol=2e-2)
        else:
            assert torch.equal(got, want)
        grad = torch.ops.learnable_ops.pad_backward(g.to(dtype).cuda(), list(x.shape), pad, mode, order).cpu()
        torch.testing.assert_close(grad.float(), grad_ref, atol=5e-2, rtol=2e-2)
    # A channels_last gradient reaches the backward kernel as a contiguous copy.
    xg = x.cuda().to(memory_format=torch.channels_last).requires_grad_()
    lo.pad(xg, pad, mode, **kw).backward(g.cuda().to(memory_format=torch.channels_last))
    torch.testing.assert_close(xg.grad.cpu(), grad_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize(
    "mode,order,pad_w,fwd_tol,bwd_tol",
    # reflect: exact; polynomial (order 1) in float16, on the copy-plus-ring kernel.
    [("reflect", None, [3, 2], 0.0, (1e-2, 1e-2)), ("polynomial", [1], [2, 1], 1e-2, (5e-2, 2e-2))],
)
def test_cuda_64bit_indices(mode, order, pad_w, fwd_tol, bwd_tol):
    # 2 * 32768 * 32769 > 2^31 elements (4.3 GB in float16): the kernels switch
    # to 64-bit indices (the polynomial kernel: plain division instead of the
    # 32-bit multiply-high). Peak about 4.5 GB (the input, then the gradient).
    free, _ = torch.cuda.mem_get_info()
    if free < 10 * 2**30:
        pytest.skip("needs about 10 GB of free GPU memory")
    shape = (2, 1, 32768, 32769)
    x = torch.empty(shape, dtype=torch.float16, device="cuda")
    x[:, :, -4:].normal_()
    # Keep the last 4 rows (offsets past 2^31), pad one row below and the columns on both sides.
    pad = [*pad_w, -(shape[2] - 4), 1]
    out = lo.pad(x, pad, mode, order=order)
    tail = x[:, :, -4:].float().cpu()
    del x
    want = lo.pad(tail, [*pad_w, 0, 1], mode, order=order)
    torch.testing.assert_close(out.float().cpu(), want, atol=fwd_tol, rtol=fwd_tol)
    g = torch.randn(out.shape, dtype=torch.float16, device="cuda")
    grad = torch.ops.learnable_ops.pad_backward(g, list(shape), pad, mode, order)
    want_grad = torch.ops.learnable_ops.pad_backward(g.float().cpu(), [2, 1, 4, shape[3]], [*pad_w, 0, 1], mode, order)
    torch.testing.assert_close(grad[:, :, -4:].float().cpu(), want_grad, atol=bwd_tol[0], rtol=bwd_tol[1])
    assert not grad[:, :, :-4].any()
