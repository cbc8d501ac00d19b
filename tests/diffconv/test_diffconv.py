"""diff_conv2d against an independent implementation of DiffConv2d's definition:
each boundary output applies the transformed kernel L_r @ k @ L_s^T to the
nearest fully valid window (on the dilated grid), interior outputs are a plain
convolution."""

import functools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops import testing


def lagrange(order: int, i: int, t: int) -> Fraction:
    """l_i(t) on the nodes 0..order, exactly."""
    value = Fraction(1)
    for m in range(order + 1):
        if m != i:
            value *= Fraction(t - m, i - m)
    return value


@functools.lru_cache(maxsize=None)
def window_along_axis(pos: int, n: int, k: int, dil: int):
    """Rows of the nearest fully valid window for output centre `pos` (on its
    residue class mod dil), and the K x K matrix L with L[i, a] = l_i(r - p + a)."""
    p = k // 2
    r0, q = pos % dil, pos // dil
    n_class = (n - 1 - r0) // dil + 1
    q_star = min(max(q, p), n_class - 1 - p)
    rows = [r0 + (q_star - p + i) * dil for i in range(k)]
    r = q - q_star + p
    mat = torch.tensor([[float(lagrange(k - 1, i, r - p + a)) for a in range(k)] for i in range(k)], dtype=torch.float64)
    return rows, mat, q_star == q


def reference(x, w, bias=None, stride=(1, 1), dilation=(1, 1), groups=1, keep=True, edge_weight=None, edge_bias=None):
    """Pixel by pixel: interior = conv; boundary = transformed kernel on the nearest valid window."""
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    ho, wo = (h - 1) // stride[0] + 1, (wd - 1) // stride[1] + 1
    per_group_out = c_out // groups
    cols = []
    for yo in range(ho):
        row = []
        for xo in range(wo):
            rows_h, lh, inner_h = window_along_axis(yo * stride[0], h, kh, dilation[0])
            rows_w, lw, inner_w = window_along_axis(xo * stride[1], wd, kw, dilation[1])
            interior = inner_h and inner_w
            source = x if (interior or keep) else x.detach()
            kernel = w if (interior or edge_weight is None) else edge_weight
            window = source[:, :, rows_h][:, :, :, rows_w]  # (N, C_in, kH, kW)
            transformed = torch.einsum("ia,ocab,jb->ocij", lh, kernel, lw)  # L_r @ k @ L_s^T
            outs = []
            for g in range(groups):
                win = window[:, g * (c_in // groups):(g + 1) * (c_in // groups)]
                ker = transformed[g * per_group_out:(g + 1) * per_group_out]
                outs.append(torch.einsum("ncij,ocij->no", win, ker))
            value = torch.cat(outs, 1)
            b = bias if (interior or edge_bias is None) else edge_bias
            if b is not None:
                value = value + b
            row.append(value)
        cols.append(torch.stack(row, -1))
    return torch.stack(cols, -2)


def make(shape_x, shape_w, groups=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape_x, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape_w, generator=gen, dtype=torch.float64, requires_grad=True)
    return x, w


@pytest.mark.parametrize("k", [3, 5, 7, 9])
def test_square_kernels_match_the_definition(k):
    x, w = make((1, 2, k + 2, k + 3), (3, 2, k, k))
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    testing.assert_matches_reference(
        lambda x, w, b: lo.diff_conv2d(x, w, b), lambda x, w, b: reference(x, w, b), [x, w, b], atol=1e-9, rtol=1e-9
    )


@pytest.mark.parametrize(
    "kernel,stride,dilation,groups",
    [((3, 5), (1, 1), (1, 1), 2), ((5, 3), (2, 1), (1, 1), 1), ((3, 3), (1, 1), (2, 3), 1), ((5, 3), (2, 3), (2, 1), 4),
     ((1, 5), (1, 2), (1, 1), 1), ((3, 7), (3, 1), (1, 2), 2)],
)
@pytest.mark.parametrize("keep", [True, False])
def test_rectangular_stride_dilation_groups(kernel, stride, dilation, groups, keep):
    x, w = make((1, 4, 11, 14), (4, 4 // groups, *kernel), seed=sum(kernel) + stride[0])
    testing.assert_matches_reference(
        lambda x, w: lo.diff_conv2d(x, w, stride=stride, dilation=dilation, groups=groups, keep_img_grad_at_invalid=keep),
        lambda x, w: reference(x, w, stride=stride, dilation=dilation, groups=groups, keep=keep),
        [x, w],
        atol=1e-9,
        rtol=1e-9,
    )


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("k", [3, 5])
def test_edge_weight_and_edge_bias(keep, k):
    x, w = make((2, 2, 11, 9), (3, 2, k, k), seed=k)
    we = torch.randn_like(w).requires_grad_()
    b, be = (torch.randn(3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    testing.assert_matches_reference(
        lambda x, w, we, b, be: lo.diff_conv2d(x, w, b, edge_weight=we, edge_bias=be, keep_img_grad_at_invalid=keep),
        lambda x, w, we, b, be: reference(x, w, b, keep=keep, edge_weight=we, edge_bias=be),
        [x, w, we, b, be],
        atol=1e-9,
        rtol=1e-9,
    )
    # Interior outputs do not see the edge weight at all.
    y = lo.diff_conv2d(x, w, b, edge_weight=we, edge_bias=be)
    p = k // 2
    torch.testing.assert_close(y[..., p:-p, p:-p], F.conv2d(x, w, b))


# The padded path (no edge weight or bias, keep_img_grad_at_invalid=True) folds
# the gradient of the extrapolated ring band by band when the image holds two
# node ranges (2 * dilation * (order + 1) samples) along an axis, in one piece
# otherwise; these shapes take both, on each axis, with stride, dilation,
# groups (dense, grouped, depthwise with multiplier 1 and 2) and lower orders.
PADDED_PATH_CASES = [
    # (x shape, w shape, stride, dilation, groups, order)
    ((1, 2, 20, 21), (3, 2, 3, 3), (1, 1), (1, 1), 1, None),  # bands on both axes
    ((1, 2, 20, 9), (2, 2, 5, 5), (1, 1), (1, 1), 1, None),  # bands on H, one piece on W
    ((1, 4, 25, 26), (4, 1, 3, 5), (1, 1), (2, 2), 4, None),  # depthwise, dilated bands
    ((1, 3, 24, 23), (6, 1, 5, 3), (1, 1), (1, 3), 3, (2, 1)),  # depthwise multiplier 2, lower order
    ((2, 4, 24, 23), (6, 2, 3, 5), (2, 3), (1, 2), 2, None),  # stride: transposed conv, output_padding
    ((1, 2, 15, 17), (2, 2, 7, 1), (1, 1), (1, 1), 1, (3, 0)),  # 7x1 kernel: no padding along W
]


@pytest.mark.parametrize("shape_x,shape_w,stride,dilation,groups,order", PADDED_PATH_CASES)
def test_padded_path_matches_the_definition(shape_x, shape_w, stride, dilation, groups, order):
    x, w = make(shape_x, shape_w, groups=groups, seed=shape_x[2])
    b = torch.randn(shape_w[0], dtype=torch.float64, requires_grad=True)
    if order is None:
        ref = lambda x, w, b: reference(x, w, b, stride=stride, dilation=dilation, groups=groups)
    else:
        # The reference implements DiffConv2d's full degree; a lower order is
        # checked against the pad op followed by a valid convolution.
        def ref(x, w, b):
            pad_h, pad_w = (w.shape[2] // 2) * dilation[0], (w.shape[3] // 2) * dilation[1]
            padded = lo.pad(x, [pad_w, pad_w, pad_h, pad_h], "polynomial", order=order, dilation=dilation)
            return F.conv2d(padded, w, b, stride=stride, dilation=dilation, groups=groups)
    testing.assert_matches_reference(
        lambda x, w, b: lo.diff_conv2d(x, w, b, stride=stride, dilation=dilation, groups=groups, order=order),
        ref, [x, w, b], atol=1e-9, rtol=1e-9,
    )


def test_padded_backward_op_gradients_and_masks():
    x, w = make((2, 4, 13, 12), (4, 2, 3, 5), seed=3)
    g = torch.randn(2, 4, 7, 12, dtype=torch.float64)
    stride, dilation, groups, order = [2, 1], [1, 2], 2, [2, 3]
    back = torch.ops.learnable_ops.diff_conv2d_padded_backward.default
    full = back(g, x.detach(), w.detach(), stride, dilation, groups, order, [True, True, True])
    # The image part of the folded padded gradient, a view (no second input-sized buffer).
    assert full[0].shape == x.shape and full[0].stride() == (4 * 15 * 20, 15 * 20, 20, 1)
    b = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    want = torch.autograd.grad(lo.diff_conv2d(x, w, b, stride, dilation, groups, order=order), [x, w, b], g)
    torch.testing.assert_close(full[0], want[0])
    torch.testing.assert_close(full[1], want[1])
    torch.testing.assert_close(full[2], want[2])
    for mask in ([True, False, False], [False, True, False], [False, False, True]):
        part = back(g, x.detach(), w.detach(), stride, dilation, groups, order, mask)
        for got, expected, needed in zip(part, full, mask):
            if needed:
                torch.testing.assert_close(got, expected)
            else:
                assert got is None


def test_keep_false_input_gradient_is_interior_only():
    x, w = make((1, 2, 9, 10), (2, 2, 3, 3))
    g = torch.randn(1, 2, 9, 10, dtype=torch.float64)
    (gx,) = torch.autograd.grad(lo.diff_conv2d(x, w, keep_img_grad_at_invalid=False), x, g)
    interior = torch.zeros_like(g)
    interior[..., 1:-1, 1:-1] = g[..., 1:-1, 1:-1]
    (want,) = torch.autograd.grad(F.conv2d(x, w, padding=1), x, interior)
    torch.testing.assert_close(gx, want)
    # The weight gradient still counts the boundary outputs.
    (gw_keep,) = torch.autograd.grad(lo.diff_conv2d(x, w), w, g)
    (gw_nokeep,) = torch.autograd.grad(lo.diff_conv2d(x, w, keep_img_grad_at_invalid=False), w, g)
    torch.testing.assert_close(gw_keep, gw_nokeep)


def fit_pad_reference(x, pad_h, pad_w, order, dilation):
    """Extrapolation by least-squares polynomial fit (numpy.polyfit) of each padded
    sample's own residue class: an independent route to the padded image."""
    def extend(a, axis, amount, q, d):
        a = np.moveaxis(a, axis, -1)
        n = a.shape[-1]
        out = np.zeros(a.shape[:-1] + (n + 2 * amount,))
        out[..., amount:amount + n] = a
        for p in list(range(-amount, 0)) + list(range(n, n + amount)):
            same = [j for j in range(n) if (j - p) % d == 0]
            nodes = same[: q + 1] if p < 0 else same[::-1][: q + 1]
            flat = a[..., nodes].reshape(-1, len(nodes))
            fitted = np.array([np.polyval(np.polyfit(nodes, row, q), p) for row in flat])
            out[..., p + amount] = fitted.reshape(a.shape[:-1])
        return np.moveaxis(out, -1, axis)

    a = x.detach().numpy()
    a = extend(a, 2, pad_h, order[0], dilation[0])
    a = extend(a, 3, pad_w, order[1], dilation[1])
    return torch.from_numpy(a)


@pytest.mark.parametrize("order,dilation", [((1, 2), (1, 1)), ((0, 3), (1, 2)), ((2, 2), (2, 1))])
def test_lower_order_is_extrapolation_of_that_degree(order, dilation):
    x, w = make((1, 2, 14, 15), (3, 2, 5, 5))
    y = lo.diff_conv2d(x, w, dilation=dilation, order=order)
    padded = fit_pad_reference(x, 2 * dilation[0], 2 * dilation[1], order, dilation)
    torch.testing.assert_close(y.detach(), F.conv2d(padded, w.detach(), dilation=dilation), atol=1e-8, rtol=1e-8)


def published_weights(k: int) -> dict:
    """The DiffConv2d tables for K = 3, 5, 7, from integer arithmetic:
    c_d[i] = (-1)^i C(K-1, i) * prod_{m != i} (d + m) / prod_{m != i} |i - m| ... written as
    l_i(-d) = (-1)^i * (d + K - 1)! / ((d - 1)! (d + i) i! (K - 1 - i)!)."""
    table = {}
    for d in range(1, k // 2 + 1):
        row = []
        for i in range(k):
            num = math.factorial(d + k - 1) // math.factorial(d - 1)
            value = Fraction((-1) ** i * num, (d + i) * math.factorial(i) * math.factorial(k - 1 - i))
            assert value.denominator == 1
            row.append(int(value))
        table[d] = row
    return table


def test_published_tables():
    assert published_weights(3) == {1: [3, -3, 1]}
    assert published_weights(5)[2] == [15, -40, 45, -24, 5]
    assert published_weights(7)[3] == [84, -378, 756, -840, 540, -189, 28]
    assert [sum(abs(v) for v in published_weights(k)[k // 2]) for k in (3, 5, 7)] == [7, 129, 2815]


@pytest.mark.parametrize("k", [3, 5, 7])
def test_derived_weights_equal_published_tables(k):
    # Batch entry j holds ones in row j; a kernel that reads only its top tap at
    # column p makes output row p - d (d = 1..p) the value extrapolated d rows above.
    p = k // 2
    x = torch.zeros(k, 1, k + 2, k, dtype=torch.float64)
    for j in range(k):
        x[j, 0, j] = 1.0
    w = torch.zeros(1, 1, k, k, dtype=torch.float64)
    w[0, 0, 0, p] = 1.0
    y = lo.diff_conv2d(x, w)
    for d, row in published_weights(k).items():
        assert y[:, 0, p - d, p].tolist() == row


def test_gradcheck():
    x, w = make((1, 2, 7, 8), (2, 1, 3, 5))
    we = torch.randn_like(w).requires_grad_()
    b, be = (torch.randn(2, dtype=torch.float64, requires_grad=True) for _ in range(2))
    testing.check_gradcheck(
        lambda *a: lo.diff_conv2d(a[0], a[1], a[3], groups=2, edge_weight=a[2], edge_bias=a[4]), [x, w, we, b, be], fast_mode=True
    )
    # keep_img_grad_at_invalid=False is not the derivative for input by design; check the weight.
    testing.check_gradcheck(
        lambda w: lo.diff_conv2d(x.detach(), w, groups=2, stride=2, dilation=(2, 1), keep_img_grad_at_invalid=False), [w],
        fast_mode=True,
    )
    testing.check_gradcheck(lambda x, w: lo.diff_conv2d(x, w, groups=2, stride=2, dilation=(2, 1)), [x, w], fast_mode=True)


def test_opcheck():
    x, w = make((2, 2, 9, 8), (4, 1, 3, 3))
    we = torch.randn_like(w).requires_grad_()
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    op = torch.ops.learnable_ops.diff_conv2d.default
    testing.check_opcheck(op, (x, w, b, None, None, [1, 1], [1, 1], 2, [2, 2], True))
    testing.check_opcheck(op, (x, w, b, we, torch.randn_like(b).requires_grad_(), [2, 1], [1, 2], 2, [1, 2], False))
    # The backward op has no derivative of its own (double backward raises), so
    # its inputs do not require grad here.
    g = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    x, w, we = x.detach(), w.detach(), we.detach()
    back = torch.ops.learnable_ops.diff_conv2d_backward.default
    testing.check_opcheck(back, (g, x, w, we, True, [1, 1], [1, 1], 2, [2, 2], True, [True, True, True, True, True]))
    testing.check_opcheck(back, (g, x, w, None, False, [1, 1], [1, 1], 2, [2, 2], False, [True, False, True, False, False]))
    padded_back = torch.ops.learnable_ops.diff_conv2d_padded_backward.default
    testing.check_opcheck(padded_back, (g, x, w, [1, 1], [1, 1], 2, [2, 2], [True, True, True]))
    testing.check_opcheck(padded_back, (g[:, :, ::2], x, w, [2, 1], [1, 2], 2, [1, 2], [True, False, True]))


@pytest.mark.parametrize(
    "shape_x,shape_w,stride,dilation,groups,order",
    PADDED_PATH_CASES
    + [
        ((2, 3, 9, 11), (3, 1, 7, 7), (1, 1), (1, 1), 3, None),  # the two edges' nodes overlap on both axes
        ((1, 2, 12, 40), (2, 2, 5, 3), (1, 1), (2, 3), 1, (4, 1)),  # dilated nodes, residue classes
    ],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
def test_padded_path_fold_in_place_equals_band_fold(monkeypatch, shape_x, shape_w, stride, dilation, groups, order,
                                                     dtype):
    """The padded path's fold in place (learnable_ops/diffconv_fold.h, the default) gives the
    band fold's input gradient (LEARNABLE_OPS_DIFFCONV_FOLD_INPLACE=0): the same sums in the
    same order, so float64 to rounding and float32/bfloat16 to a few ulps."""
    x, w = make(shape_x, shape_w, groups=groups, seed=shape_x[3])
    x, w = x.detach().to(dtype), w.detach().to(dtype)
    kh, kw = shape_w[2:]
    order = list(order or (kh - 1, kw - 1))
    out = lo.diff_conv2d(x.double(), w.double(), None, stride, dilation, groups, order=order)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(dtype)
    back = torch.ops.learnable_ops.diff_conv2d_padded_backward.default
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_FOLD_INPLACE", "0")
    want = back(g, x, w, list(stride), list(dilation), groups, order, [True, False, False])[0]
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_FOLD_INPLACE", "1")
    got = back(g, x, w, list(stride), list(dilation), groups, order, [True, False, False])[0]
    scale = want.double().abs().max().item()
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(got.double(), want.double(), rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("chunks", ["2", "3", "7"])
def test_padded_path_in_batch_chunks(monkeypatch, chunks):
    """LEARNABLE_OPS_DIFFCONV_CHUNKS (a tuning switch of the padded path): the batch in chunks
    gives the same values and gradients, a contiguous input gradient (the fake mirrors it:
    opcheck), and more chunks than images fall back to one image a chunk."""
    x, w = make((5, 4, 13, 12), (4, 2, 3, 5), seed=4)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    stride, dilation, groups, order = [2, 1], [1, 2], 2, [2, 3]
    out = lo.diff_conv2d(x, w, b, stride, dilation, groups, order=order)
    g = torch.randn_like(out)
    want = torch.autograd.grad(out, [x, w, b], g)
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_CHUNKS", chunks)
    got_out = lo.diff_conv2d(x, w, b, stride, dilation, groups, order=order)
    torch.testing.assert_close(got_out, out, rtol=1e-12, atol=1e-12)
    got = torch.autograd.grad(got_out, [x, w, b], g)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
    back = torch.ops.learnable_ops.diff_conv2d_padded_backward.default
    grads = back(g, x.detach(), w.detach(), stride, dilation, groups, order, [True, True, True])
    assert grads[0].is_contiguous()
    testing.check_opcheck(back, (g, x.detach(), w.detach(), stride, dilation, groups, order, [True, True, False]))
    testing.check_opcheck(
        torch.ops.learnable_ops.diff_conv2d.default, (x, w, b, None, None, stride, dilation, groups, order, True)
    )


def test_double_backward_raises():
    x, w = make((1, 1, 5, 5), (1, 1, 3, 3))
    (gx,) = torch.autograd.grad(lo.diff_conv2d(x, w).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        gx.sum().backward()


def test_compile_fullgraph():
    x, w = make((2, 2, 9, 8), (3, 2, 3, 5))

    def f(x, w):
        return lo.diff_conv2d(x.sin(), w, stride=(1, 2)).relu()

    testing.check_compile(f, [x, w])


def _on_one_and_two_threads(x, w, g, **kwargs):
    """diff_conv2d's output, input gradient and weight gradient (cotangent g) with 1 and
    with 2 threads."""
    results = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
            y = lo.diff_conv2d(xr, wr, **kwargs)
            results.append((y.detach(), *torch.autograd.grad(y, [xr, wr], g)))
    finally:
        torch.set_num_threads(before)
    return results


@pytest.mark.parametrize("groups", [1, 8])
def test_thread_count_independent(groups):
    # Stride 1: the ring path. Output and input gradient are bit-identical on 1
    # and 2 threads. The weight gradient is ATen's convolution weight gradient, which
    # oneDNN reduces in a thread-count dependent order (F.conv2d's own weight
    # gradient differs in the last bits too), so it is compared with a tolerance
    # relative to the sum of the absolute products it adds up: the extrapolated
    # border makes some of them ~1e4 at K = 5.
    x, w = make((2, 8, 23, 19), (8, 8 // groups, 5, 5))
    x, w = x.detach().float(), w.detach().float()
    g = torch.randn(2, 8, 23, 19)
    (y1, gx1, gw1), (y2, gx2, gw2) = _on_one_and_two_threads(x, w, g, groups=groups)
    assert torch.equal(y1, y2)
    assert torch.equal(gx1, gx2)
    magnitude = torch.nn.grad.conv2d_weight(
        lo.pad(x, [2] * 4, "polynomial", order=4).abs(), w.shape, g.abs(), groups=groups
    )
    assert ((gw1 - gw2).abs() <= 1e-5 * magnitude).all()


@pytest.mark.parametrize("groups", [1, 8])
@pytest.mark.parametrize("stride, keep", [((1, 2), True), ((1, 1), False)])
def test_padded_path_thread_count_independent(groups, stride, keep):
    # Stride 2 or keep_img_grad_at_invalid=False: the padded path, whose input gradient is
    # folded in place (learnable_ops/diffconv_fold.h). Output and input gradient are
    # bit-identical on 1 and 2 threads; the weight gradient within a tolerance, as above.
    x, w = make((2, 8, 23, 19), (8, 8 // groups, 5, 5))
    x, w = x.detach().float(), w.detach().float()
    g = torch.randn((2, 8, 23, (19 + stride[1] - 1) // stride[1]))
    kwargs = dict(stride=stride, groups=groups, keep_img_grad_at_invalid=keep)
    (y1, gx1, gw1), (y2, gx2, gw2) = _on_one_and_two_threads(x, w, g, **kwargs)
    assert y1.shape == g.shape
    assert torch.equal(y1, y2)
    assert torch.equal(gx1, gx2)
    assert gx1.abs().sum() > 0
    assert ((gw1 - gw2).abs() <= 1e-4 * gw1.abs().max()).all()


def test_layouts_and_empty_batch():
    x, w = make((2, 4, 9, 10), (3, 4, 3, 3))
    ref = lo.diff_conv2d(x, w)
    torch.testing.assert_close(lo.diff_conv2d(x.to(memory_format=torch.channels_last), w), ref)
    torch.testing.assert_close(lo.diff_conv2d(x.transpose(2, 3).contiguous().transpose(2, 3), w), ref)
    torch.testing.assert_close(lo.diff_conv2d(x[:, ::2], w[:, ::2]), lo.diff_conv2d(x[:, ::2].contiguous(), w[:, ::2].contiguous()))
    empty = torch.randn(0, 4, 9, 10, dtype=torch.float64, requires_grad=True)
    out = lo.diff_conv2d(empty, w)
    assert out.shape == (0, 3, 9, 10)
    out.sum().backward()
    assert empty.grad.shape == empty.shape


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_and_warning(dtype, monkeypatch):
    import learnable_ops.ops.diffconv as module

    x = torch.rand(1, 2, 9, 9)
    w = torch.rand(2, 2, 3, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = lo.diff_conv2d(x.to(dtype), w.to(dtype))  # K = 3: no warning
    torch.testing.assert_close(y.float(), lo.diff_conv2d(x, w), atol=0.1, rtol=0.05)
    monkeypatch.setattr(module, "_warned_half_precision", False)
    w5 = torch.rand(2, 2, 5, 5)
    with pytest.warns(RuntimeWarning, match="extrapolation order 4"):
        lo.diff_conv2d(x.to(dtype), w5.to(dtype))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo.diff_conv2d(x.to(dtype), w5.to(dtype))  # only once


def test_autocast_casts_like_conv2d():
    x, w = torch.randn(1, 2, 8, 9), torch.randn(3, 2, 3, 3)
    b = torch.randn(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = lo.diff_conv2d(x, w, b)
        assert F.conv2d(x, w, b, padding=1).dtype == y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), lo.diff_conv2d(x, w, b), atol=0.1, rtol=0.05)


def test_noise_amplification_float32_drift():
    # The documented effect: on rough data the K = 7 corner output is ~1e5-1e6 and
    # float32 drifts from float64 there by far more than in the interior.
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 32, 32, generator=gen, dtype=torch.float64)
    w = torch.rand(1, 1, 7, 7, generator=gen, dtype=torch.float64)
    y64 = lo.diff_conv2d(x, w)
    y32 = lo.diff_conv2d(x.float(), w.float()).double()
    assert y64[0, 0, 0, 0].abs() > 1e4
    drift = (y32 - y64).abs()
    assert drift[..., 0, 0] > 100 * drift[..., 3:-3, 3:-3].max()


class TestBadInput:
    def test_image_smaller_than_kernel(self):
        w = torch.randn(1, 1, 5, 3)
        with pytest.raises(ValueError, match="input height 4 is smaller than the kernel"):
            lo.diff_conv2d(torch.randn(1, 1, 4, 9), w)
        with pytest.raises(ValueError, match="input width 2 is smaller than the kernel"):
            lo.diff_conv2d(torch.randn(1, 1, 9, 2), w)
        with pytest.raises(ValueError, match="input height 8 is smaller than the kernel"):
            lo.diff_conv2d(torch.randn(1, 1, 8, 9), torch.randn(1, 1, 3, 3), dilation=3)  # needs 3 * 3 samples
        with pytest.raises(ValueError, match="smaller than the kernel"):
            torch.ops.learnable_ops.diff_conv2d(torch.randn(1, 1, 4, 9), w, None, None, None, [1, 1], [1, 1], 1, [4, 2], True)

    def test_even_kernel(self):
        with pytest.raises(ValueError, match=r"kernel size must be odd along both axes .*got 3x4"):
            lo.diff_conv2d(torch.randn(1, 1, 9, 9), torch.randn(1, 1, 3, 4))
        with pytest.raises(ValueError, match="must be odd"):
            torch.ops.learnable_ops.diff_conv2d(torch.randn(1, 1, 9, 9), torch.randn(1, 1, 4, 3), None, None, None, [1, 1], [1, 1], 1, [2, 2], True)

    def test_order_too_large(self):
        with pytest.raises(ValueError, match="order must be in"):
            lo.diff_conv2d(torch.randn(1, 1, 9, 9), torch.randn(1, 1, 3, 3), order=3)
        with pytest.raises(ValueError, match="order must be in"):
            lo.diff_conv2d(torch.randn(1, 1, 9, 9), torch.randn(1, 1, 3, 5), order=(1, 5))
        with pytest.raises(ValueError, match="order must be in"):
            lo.diff_conv2d(torch.randn(1, 1, 9, 9), torch.randn(1, 1, 3, 3), order=-1)
        with pytest.raises(ValueError, match="order must be in"):
            torch.ops.learnable_ops.diff_conv2d(torch.randn(1, 1, 9, 9), torch.randn(1, 1, 3, 3), None, None, None, [1, 1], [1, 1], 1, [3, 2], True)

    def test_edge_weight_shape(self):
        with pytest.raises(ValueError, match="edge_weight must have the shape of weight"):
            lo.diff_conv2d(torch.randn(1, 2, 9, 9), torch.randn(2, 2, 3, 3), edge_weight=torch.randn(2, 2, 5, 5))
        with pytest.raises(ValueError, match="edge_weight must have the shape"):
            torch.ops.learnable_ops.diff_conv2d(
                torch.randn(1, 2, 9, 9), torch.randn(2, 2, 3, 3), None, torch.randn(2, 1, 3, 3), None, [1, 1], [1, 1], 1, [2, 2], True
            )

    def test_other_arguments(self):
        x, w = torch.randn(1, 4, 9, 9), torch.randn(4, 2, 3, 3)
        with pytest.raises(ValueError, match="groups=3 does not fit"):
            lo.diff_conv2d(x, w, groups=3)
        with pytest.raises(ValueError, match="bias must have shape"):
            lo.diff_conv2d(x, w, torch.randn(3), groups=2)
        with pytest.raises(ValueError, match="stride must be >= 1"):
            lo.diff_conv2d(x, w, groups=2, stride=0)
        with pytest.raises(TypeError, match="weight must have the dtype of input"):
            lo.diff_conv2d(x, w.double(), groups=2)
        with pytest.raises(ValueError, match="input must be a 4D tensor"):
            lo.diff_conv2d(x[0], w, groups=2)
        with pytest.raises(TypeError, match="floating-point"):
            lo.diff_conv2d(x.long(), w, groups=2)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("keep", [True, False])
def test_cuda_equals_cpu(keep):
    for kernel, stride, dilation, groups in [((3, 3), (1, 1), (1, 1), 1), ((5, 3), (2, 1), (1, 2), 2), ((7, 7), (1, 1), (1, 1), 4)]:
        x, w = make((2, 4, 17, 19), (4, 4 // groups, *kernel))
        we = torch.randn_like(w).requires_grad_()
        b, be = (torch.randn(4, dtype=torch.float64, requires_grad=True) for _ in range(2))
        testing.check_cpu_cuda(
            lambda x, w, we, b, be: lo.diff_conv2d(x, w, b, stride, dilation, groups, keep, we, None, be), [x, w, we, b, be],
            atol=1e-8, rtol=1e-8,
        )
        testing.check_cpu_cuda(lambda x, w: lo.diff_conv2d(x, w, None, stride, dilation, groups, keep), [x, w], atol=1e-8, rtol=1e-8)
        y = lo.diff_conv2d(x.detach().float().cuda(), w.detach().float().cuda(), None, stride, dilation, groups)
        want = lo.diff_conv2d(x.detach(), w.detach(), None, stride, dilation, groups)
        torch.testing.assert_close(y.double().cpu(), want, atol=1e-2 * want.abs().max().item(), rtol=1e-3)


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_opcheck_gradcheck_compile():
    x, w = make((2, 2, 9, 8), (4, 1, 3, 3))
    x, w = x.detach().cuda().requires_grad_(), w.detach().cuda().requires_grad_()
    we = torch.randn_like(w).requires_grad_()
    op = torch.ops.learnable_ops.diff_conv2d.default
    testing.check_opcheck(op, (x, w, None, we, None, [2, 1], [1, 2], 2, [1, 2], False))
    # cuDNN's weight-gradient algorithms may sum in a nondeterministic order.
    testing.check_gradcheck(lambda x, w: lo.diff_conv2d(x, w, groups=2, dilation=(2, 1)), [x, w], nondet_tol=1e-10)
    testing.check_compile(lambda x, w: lo.diff_conv2d(x, w, groups=2).tanh(), [x, w])


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("shape_x,shape_w,stride,dilation,groups,order", PADDED_PATH_CASES)
def test_cuda_padded_path_equals_cpu(shape_x, shape_w, stride, dilation, groups, order):
    x, w = make(shape_x, shape_w, groups=groups, seed=shape_x[2])
    b = torch.randn(shape_w[0], dtype=torch.float64, requires_grad=True)
    testing.check_cpu_cuda(
        lambda x, w, b: lo.diff_conv2d(x, w, b, stride, dilation, groups, order=order), [x, w, b], atol=1e-8, rtol=1e-8
    )
    # Only the input, only the weight: the other gradients are not computed.
    # (check_cpu_cuda moves only the arguments: the captured tensor follows them.)
    testing.check_cpu_cuda(lambda x: lo.diff_conv2d(x, w.detach().to(x.device), None, stride, dilation, groups, order=order), [x],
                           atol=1e-8, rtol=1e-8)
    testing.check_cpu_cuda(lambda w: lo.diff_conv2d(x.detach().to(w.device), w, None, stride, dilation, groups, order=order), [w],
                           atol=1e-8, rtol=1e-8)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("shape_x,shape_w,stride,dilation,groups,order", PADDED_PATH_CASES[::2])
def test_cuda_padded_path_in_batch_chunks_equals_cpu(monkeypatch, shape_x, shape_w, stride, dilation, groups, order):
    # LEARNABLE_OPS_DIFFCONV_CHUNKS on CUDA, where dense layers take the channels_last route;
    # three images in two chunks.
    monkeypatch.setenv("LEARNABLE_OPS_DIFFCONV_CHUNKS", "2")
    x, w = make((3, *shape_x[1:]), shape_w, groups=groups, seed=shape_x[2])
    b = torch.randn(shape_w[0], dtype=torch.float64, requires_grad=True)
    testing.check_cpu_cuda(
        lambda x, w, b: lo.diff_conv2d(x, w, b, stride, dilation, groups, order=order), [x, w, b], atol=1e-8, rtol=1e-8
    )


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_padded_path_layouts_and_edge_shapes():
    def run(x, w, **kw):
        testing.check_cpu_cuda(lambda x, w: lo.diff_conv2d(x, w, **kw), [x, w], atol=1e-8, rtol=1e-8)

    x, w = make((2, 4, 17, 19), (4, 4, 3, 3))
    # channels_last input and weight (cuDNN may return channels_last gradients).
    cl_x = x.detach().to(memory_format=torch.channels_last).requires_grad_()
    cl_w = w.detach().to(memory_format=torch.channels_last).requires_grad_()
    run(cl_x, cl_w)
    # Non-contiguous input (a transposed view), depthwise.
    xt = x.detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()
    run(xt, make((1, 1, 1, 1), (4, 1, 5, 3))[1], groups=4)
    # Width 1 (a 3x1 kernel pads rows only), and the narrowest image for K = 7.
    run(*make((2, 3, 9, 1), (2, 3, 3, 1)))
    run(*make((1, 2, 7, 7), (2, 2, 7, 7)))
    # An expanded (stride 0) output gradient, as from .sum(), dense and depthwise.
    for weight, groups in ((w, 1), (make((1, 1, 1, 1), (4, 1, 3, 3))[1], 4)):
        grads = []
        for device in ("cpu", "cuda"):
            xd, wd = x.detach().to(device).requires_grad_(), weight.detach().to(device).requires_grad_()
            lo.diff_conv2d(xd, wd, groups=groups).sum().backward()
            grads.append((xd.grad.cpu(), wd.grad.cpu()))
        for got, want in zip(grads[1], grads[0]):
            torch.testing.assert_close(got, want, atol=1e-8, rtol=1e-8)
    # Empty batch: empty output, zero weight gradient.
    empty = torch.zeros(0, 4, 9, 10, dtype=torch.float64, device="cuda", requires_grad=True)
    wc = w.detach().cuda().requires_grad_()
    out = lo.diff_conv2d(empty, wc)
    assert out.shape == (0, 4, 9, 10)
    out.sum().backward()
    assert empty.grad.shape == empty.shape and wc.grad.abs().sum() == 0
    # float32 (TF32 convolutions by default) and bfloat16 on the GPU against float64 on the CPU.
    want = lo.diff_conv2d(x.detach(), w.detach())
    for dtype, tol in ((torch.float32, 1e-2), (torch.bfloat16, 5e-2)):
        got = lo.diff_conv2d(x.detach().to("cuda", dtype), w.detach().to("cuda", dtype)).double().cpu()
        torch.testing.assert_close(got, want, atol=tol * want.abs().max().item(), rtol=tol)


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_padded_backward_opcheck_and_compile():
    x, w = make((2, 4, 9, 8), (4, 1, 3, 3))
    x, w = x.detach().cuda(), w.detach().cuda()
    g = torch.randn(2, 4, 9, 8, dtype=torch.float64, device="cuda")
    back = torch.ops.learnable_ops.diff_conv2d_padded_backward.default
    testing.check_opcheck(back, (g, x, w, [1, 1], [1, 1], 4, [2, 2], [True, True, True]))
    testing.check_opcheck(back, (g[:, :, ::2], x, w, [2, 1], [1, 2], 4, [1, 2], [True, True, False]))
    testing.check_opcheck(torch.ops.learnable_ops.diff_conv2d.default,
                          (x.requires_grad_(), w.requires_grad_(), None, None, None, [1, 1], [2, 1], 4, [2, 2], True))
    testing.check_compile(lambda x, w: lo.diff_conv2d(x, w, groups=4, dilation=(1, 2)).sin(), [x, w])
