import pytest
import torch
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops import testing


def reference_kernel(W, P, D, version):
    """Dense DCLS kernel, float64, straight from the formulas: the triangle
    max(0, 1 - |u_a - c_a|) per axis, c_a = P[a] + D_a // 2, P[a] -> kernel axis a;
    v1 divides by the sum over the grid + 1e-7."""
    n = P.shape[0]
    C, Kc = W.shape
    grids = torch.meshgrid(*[torch.arange(d, dtype=P.dtype) for d in D], indexing="ij")
    phi = torch.ones((C, Kc, *D), dtype=P.dtype)
    for a in range(n):
        centre = (P[a] + D[a] // 2).reshape(C, Kc, *([1] * n))
        phi = phi * torch.relu(1 - (grids[a].reshape(1, 1, *D) - centre).abs())
    if version == "v1":
        phi = phi / (phi.sum(dim=tuple(range(2, 2 + n)), keepdim=True) + 1e-7)
    return (W.reshape(C, Kc, *([1] * n)) * phi).sum(1)


def reference(x, W, P, b, D, stride, padding, version):
    n = x.dim() - 2
    W2 = W.reshape(W.shape[0], -1)
    P3 = P.reshape(n, -1, W2.shape[1]).expand(n, W2.shape[0], W2.shape[1])
    K = reference_kernel(W2, P3, D, version).unsqueeze(1)
    conv = F.conv2d if n == 2 else F.conv1d
    return conv(x, K, b, stride, padding, groups=x.shape[1])


def make(n, C, Kc, size, D, dtype=torch.float64, spread=1.0, shared=False):
    x = torch.randn(2, C, *size, dtype=dtype, requires_grad=True)
    W = torch.randn(C, 1, Kc, dtype=dtype, requires_grad=True)
    lim = torch.tensor([d // 2 for d in D], dtype=dtype).view(n, 1, 1, 1)
    # Positions over the whole grid and a bit beyond (corners falling off it), away from integers.
    P = (torch.rand(n, 1 if shared else C, 1, Kc, dtype=dtype) * 2 - 1) * (lim + spread)
    P = P + 0.137 * (P.frac().abs() < 0.05)
    b = torch.randn(C, dtype=dtype, requires_grad=True)
    return x, W, P.requires_grad_(), b


CASES = [
    # n, size, D, stride, padding
    (2, (13, 12), (7, 7), 1, 3),
    (2, (14, 15), (5, 9), 2, (1, 4)),
    (2, (11, 13), (4, 6), 1, (2, 3)),
    (2, (17, 17), (17, 17), 1, 8),
    (1, (21,), (9,), 1, 4),
    (1, (23,), (8,), 2, 0),
]


@pytest.mark.parametrize("version", lo.SPARSE_VERSIONS)
@pytest.mark.parametrize("n,size,D,stride,padding", CASES)
def test_equals_construct_and_conv(version, n, size, D, stride, padding):
    x, W, P, b = make(n, 3, 5, size, D)
    testing.assert_matches_reference(
        lambda x, W, P, b: lo.dcls_sparse_depthwise(x, W, P, b, D, stride, padding, version),
        lambda x, W, P, b: reference(x, W, P, b, D, stride, padding, version),
        [x, W, P, b],
    )


@pytest.mark.parametrize("version", lo.SPARSE_VERSIONS)
def test_positions_shared_over_channels(version):
    x, W, P, b = make(2, 4, 3, (10, 11), (5, 7), shared=True)
    testing.assert_matches_reference(
        lambda x, W, P, b: lo.dcls_sparse_depthwise(x, W, P, b, (5, 7), 1, (2, 3), version),
        lambda x, W, P, b: reference(x, W, P, b, (5, 7), 1, (2, 3), version),
        [x, W, P, b],
    )


@pytest.mark.skipif(not hasattr(torch.ops.learnable_ops, "dcls_construct"), reason="dcls_construct not merged yet")
@pytest.mark.parametrize("version", lo.SPARSE_VERSIONS)
@pytest.mark.parametrize("on_grid", [False, True])
def test_equals_native_construct(version, on_grid):
    """Values and gradients equal dcls_construct + conv, also with taps on
    integer positions and on the grid border (where the derivative is one-sided)."""
    x, W, P, b = make(2, 3, 4, (12, 13), (5, 7))
    if on_grid:
        P = P.detach().round().clamp(-3, 3).requires_grad_()

    def construct_conv(x, W, P, b):
        K = torch.ops.learnable_ops.dcls_construct(W, P, None, [5, 7], version)
        return F.conv2d(x, K, b, 1, (2, 3), groups=3)

    testing.assert_matches_reference(
        lambda x, W, P, b: lo.dcls_sparse_depthwise(x, W, P, b, (5, 7), 1, (2, 3), version), construct_conv, [x, W, P, b]
    )


@pytest.mark.parametrize("version", lo.SPARSE_VERSIONS)
@pytest.mark.parametrize("n", [1, 2])
def test_gradcheck(version, n):
    D = (5, 4)[:n] if n == 2 else (6,)
    x, W, P, b = make(n, 2, 3, (6, 7)[:n], D)
    testing.check_gradcheck(lambda x, W, P, b: lo.dcls_sparse_depthwise(x, W, P, b, D, 1, 2, version), [x, W, P, b])


@pytest.mark.parametrize("version", lo.SPARSE_VERSIONS)
def test_documented_gradient_at_integer_positions(version):
    """At integer positions (and at the grid border) the position gradient is the
    one-sided derivative from above, in v0 and v1, as dcls_construct's."""
    x, W, _, b = make(2, 2, 3, (9, 10), (5, 5))
    P = torch.tensor([[-1.0, 0.0, 2.0], [1.0, -2.0, 0.0]], dtype=torch.float64).reshape(2, 1, 1, 3)
    P = P.expand(2, 2, 1, 3).contiguous().requires_grad_()
    go = torch.randn(2, 2, 9, 10, dtype=torch.float64)
    (grad,) = torch.autograd.grad(lo.dcls_sparse_depthwise(x, W, P, b, 5, 1, 2, version), P, go)
    eps = 1e-7
    at = (reference(x, W, P, b, (5, 5), 1, 2, version) * go).sum()
    for a in range(2):
        for c in range(2):
            for k in range(3):
                step = torch.zeros_like(P)
                step[a, c, 0, k] = eps
                one_sided = ((reference(x, W, P + step, b, (5, 5), 1, 2, version) * go).sum() - at) / eps
                torch.testing.assert_close(grad[a, c, 0, k], one_sided, atol=1e-5, rtol=1e-5)


def test_opcheck_forward_and_backward():
    x, W, P, b = make(2, 3, 4, (8, 9), (5, 5))
    ops = torch.ops.learnable_ops
    args = (x, W.squeeze(1), P.squeeze(2), b, [5, 5], [1, 2], [2, 1], "v1")
    testing.check_opcheck(ops.dcls_sparse_depthwise.default, args)
    go = torch.randn(ops.dcls_sparse_depthwise(*args).shape, dtype=torch.float64)
    # The backward op has no double backward (test_double_backward_raises_clearly): check it without grad.
    x, W, P = (t.detach() for t in (x, W, P))
    for input_grad in (True, False):
        testing.check_opcheck(
            ops.dcls_sparse_depthwise_backward.default,
            (go, x, W.squeeze(1), P.squeeze(2), [5, 5], [1, 2], [2, 1], "v0", input_grad),
        )


def test_compile_fullgraph():
    x, W, P, b = make(2, 3, 4, (8, 9), (5, 5))
    testing.check_compile(lambda x, W, P, b: lo.dcls_sparse_depthwise(x.cos(), W, P, b, 5, 1, 2, "v0").sin(), [x, W, P, b])


def test_thread_count_independent():
    x, W, P, b = make(2, 6, 8, (21, 33), (9, 9), dtype=torch.float32)
    testing.check_thread_independence(lambda x, W, P, b: lo.dcls_sparse_depthwise(x, W, P, b, 9, 1, 4, "v1"), [x, W, P, b])


def test_layouts_and_empty_batch():
    x, W, P, b = make(2, 4, 3, (10, 11), (5, 5))
    ref = lo.dcls_sparse_depthwise(x, W, P, b, 5, 1, 2)
    cl = x.detach().to(memory_format=torch.channels_last)
    torch.testing.assert_close(lo.dcls_sparse_depthwise(cl, W, P, b, 5, 1, 2), ref)
    empty = torch.randn(0, 4, 10, 11, dtype=torch.float64, requires_grad=True)
    out = lo.dcls_sparse_depthwise(empty, W, P, b, 5, 1, 2)
    assert out.shape == (0, 4, 10, 11)
    out.sum().backward()
    assert empty.grad.shape == empty.shape and torch.equal(b.grad, torch.zeros_like(b))


def test_double_backward_raises_clearly():
    x, W, P, b = make(2, 2, 3, (6, 6), (3, 3))
    (gx,) = torch.autograd.grad(lo.dcls_sparse_depthwise(x, W, P, b, 3, 1, 1).sum(), x, create_graph=True)
    with pytest.raises(NotImplementedError, match="double backward"):
        gx.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision(dtype):
    x, W, P, b = make(2, 3, 6, (12, 12), (7, 7), dtype=torch.float32)
    ref = reference(*(t.detach().double() for t in (x, W, P, b)), (7, 7), 1, 3, "v0")
    xh, Wh, bh = (t.detach().to(dtype) for t in (x, W, b))
    out = lo.dcls_sparse_depthwise(xh, Wh, P.detach(), bh, 7, 1, 3, "v0")
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref.float(), atol=0.1, rtol=0.05)


def test_bad_input():
    x, W, P, b = make(2, 3, 4, (8, 9), (5, 5))
    with pytest.raises(ValueError, match="version"):
        lo.dcls_sparse_depthwise(x, W, P, b, 5, version="gauss")
    with pytest.raises(ValueError, match="P must have shape"):
        lo.dcls_sparse_depthwise(x, W, P[:1], b, 5)
    with pytest.raises(ValueError, match="weight"):
        lo.dcls_sparse_depthwise(x, W[:2], P, b, 5)
    with pytest.raises(ValueError, match="dilated_kernel_size"):
        lo.dcls_sparse_depthwise(x, W, P, b, 0)
    with pytest.raises(ValueError, match="dilated_kernel_size"):
        lo.dcls_sparse_depthwise(x, W, P, b, 15)
    with pytest.raises(TypeError, match="P"):
        lo.dcls_sparse_depthwise(x, W, P.long(), b, 5)
    with pytest.raises(ValueError, match="input"):
        lo.dcls_sparse_depthwise(x[0, 0], W, P, b, 5)
    with pytest.raises(ValueError, match="version"):
        torch.ops.learnable_ops.dcls_sparse_depthwise(x, W.squeeze(1), P.squeeze(2), b, [5, 5], [1, 1], [0, 0], "max")
    with pytest.raises(TypeError, match="input"):
        lo.dcls_sparse_depthwise(x.long(), W, P, b, 5)
    with pytest.raises(ValueError, match="bias"):
        lo.dcls_sparse_depthwise(x, W, P, b[:2], 5)
    with pytest.raises(TypeError, match="bias"):
        lo.dcls_sparse_depthwise(x, W, P, b.float(), 5)
    with pytest.raises(TypeError, match="weight"):
        lo.dcls_sparse_depthwise(x, W.float(), P, b, 5)
    with pytest.raises(ValueError, match="padding"):
        lo.dcls_sparse_depthwise(x, W, P, b, 5, padding=-1)
    with pytest.raises(ValueError, match="stride"):
        lo.dcls_sparse_depthwise(x, W, P, b, 5, stride=(1, 1, 1))


def test_positions_may_have_another_dtype():
    """fp32 parameters with a bf16 input (autocast) or fp64 positions with an fp32 input."""
    x, W, P, b = make(2, 3, 4, (8, 9), (5, 5), dtype=torch.float32)
    ref = lo.dcls_sparse_depthwise(x, W, P, b, 5, 1, 2)
    out = lo.dcls_sparse_depthwise(x, W, P.double(), b, 5, 1, 2)
    torch.testing.assert_close(out, ref)
    (gp,) = torch.autograd.grad(out.sum(), P)
    assert gp.dtype == torch.float32


def test_non_finite_positions_drop_the_tap():
    x, W, P, b = make(2, 2, 3, (8, 8), (5, 5))
    P = P.detach().clone()
    P[0, 0, 0, 1] = float("nan")
    P[1, 1, 0, 2] = float("inf")
    out = lo.dcls_sparse_depthwise(x, W, P, b, 5, 1, 2)
    assert torch.isfinite(out).all()
    W0 = W.detach().clone()
    W0[0, 0, 1] = 0
    W0[1, 0, 2] = 0
    P0 = P.nan_to_num(0.3, 0.3, 0.3)
    torch.testing.assert_close(out, lo.dcls_sparse_depthwise(x, W0, P0, b, 5, 1, 2))


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("version", lo.SPARSE_VERSIONS)
@pytest.mark.parametrize("n,size,D,stride,padding", CASES)
def test_cuda_matches_cpu(version, n, size, D, stride, padding):
    x, W, P, b = make(n, 3, 5, size, D)
    testing.check_cpu_cuda(
        lambda x, W, P, b: lo.dcls_sparse_depthwise(x, W, P, b, D, stride, padding, version), [x, W, P, b], atol=1e-9, rtol=1e-9
    )


@pytest.mark.cuda
@testing.requires_cuda
def test_cuda_opcheck_gradcheck_and_half():
    x, W, P, b = (t.detach().cuda().requires_grad_() for t in make(2, 3, 4, (8, 9), (5, 5)))
    ops = torch.ops.learnable_ops
    testing.check_opcheck(ops.dcls_sparse_depthwise.default, (x, W.squeeze(1), P.squeeze(2), b, [5, 5], [1, 2], [2, 1], "v1"))
    testing.check_gradcheck(lambda x, W, P, b: lo.dcls_sparse_depthwise(x, W, P, b, 5, 2, 2, "v0"), [x, W, P, b])
    ref = reference(*(t.detach().cpu() for t in (x, W, P, b)), (5, 5), 1, 2, "v1")
    for dtype in (torch.float16, torch.bfloat16):
        out = lo.dcls_sparse_depthwise(x.detach().to(dtype), W.detach().to(dtype), P.detach(), b.detach().to(dtype), 5, 1, 2, "v1")
        torch.testing.assert_close(out.cpu().double(), ref, atol=0.1, rtol=0.05)
