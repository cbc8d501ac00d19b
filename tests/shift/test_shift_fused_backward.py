"""The fused backward op ``shift_backward``: both gradients in one op, equal to the separate ops.

On the CPU, sparse mode runs the separate ops' row and chunk code and reduces the shift-gradient
partial sums in the same order: both gradients are bit-identical to ``shift_input_backward`` and
``shift_shifts_backward``. Active mode takes one pass in adjoint form (the shift gradient summed
over input positions): equal to the separate ops up to float rounding. Both are independent of the
number of threads.
"""

import pytest
import torch

import learnable_ops as lo
from learnable_ops import testing

from shift_reference import reference_shift

SHAPES = {1: (2, 3, 7), 2: (2, 3, 5, 6), 3: (1, 2, 3, 4, 5)}
ops = torch.ops.learnable_ops


def shift_sets(channels, ndim, length, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def uniform(spread):
        return (torch.rand(channels, ndim, generator=gen, dtype=torch.float64) * 2 - 1) * spread

    return [
        torch.zeros(channels, ndim, dtype=torch.float64),
        uniform(0.45),
        uniform(1.5) + 0.5 * (uniform(1) > 0),  # some values half-way between integers
        uniform(3.5).round(),  # lattice points
        uniform(2.5 * length),
        uniform(1e9),
    ]


def assert_matches_separate(fused, expected, mode):
    input_dtype = expected[0].dtype
    for a, b in zip(fused, expected):
        assert a.dtype == b.dtype and a.shape == b.shape
        if mode == "sparse":
            assert torch.equal(a, b)
            continue
        # Sums of O(size) products in another order, in the accumulation type, then
        # rounded to the result's dtype.
        acc_eps = torch.finfo(torch.float64 if input_dtype == torch.float64 else torch.float32).eps
        scale = max(1.0, float(b.double().abs().max())) if b.numel() else 1.0
        torch.testing.assert_close(
            a.double(), b.double(), atol=1e3 * acc_eps * scale, rtol=2 * torch.finfo(a.dtype).eps, equal_nan=True
        )


def separate(grad_output, input, shifts, padding_mode, mode):
    return (
        ops.shift_input_backward.default(grad_output, shifts, padding_mode, mode),
        ops.shift_shifts_backward.default(grad_output, input, shifts, padding_mode),
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_fused_equals_separate_ops(ndim, padding_mode, mode, dtype):
    x = torch.randn(SHAPES[ndim], dtype=torch.float64).to(dtype)
    g = torch.randn(SHAPES[ndim], dtype=torch.float64).to(dtype)
    for s in shift_sets(x.shape[1], ndim, max(x.shape[2:]), seed=ndim):
        fused = ops.shift_backward.default(g, x, s, padding_mode, mode)
        assert_matches_separate(fused, separate(g, x, s, padding_mode, mode), mode)


@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
def test_fused_active_many_preimages_and_nan(padding_mode):
    """Rows read by more than four grad_output rows (large shifts with border, reflect and
    symmetric padding), three rows, lattice points (t = 0 on an axis), and a NaN shift."""
    x = torch.randn(2, 5, 4, 3, 5, dtype=torch.float64)
    g = torch.randn(2, 5, 4, 3, 5, dtype=torch.float64)
    s = torch.tensor(
        [[7.3, -9.6, 11.2], [2.0, 0.5, -3.0], [-0.25, 4.0, 0.75], [float("nan"), 1.0, 1.0], [30.5, -30.5, 0.0]],
        dtype=torch.float64,
    )
    fused = ops.shift_backward.default(g, x, s, padding_mode, "active")
    assert_matches_separate(fused, separate(g, x, s, padding_mode, "active"), "active")
    assert fused[0][:, 3].isnan().all() and fused[1][3].isnan().all()
    assert torch.isfinite(fused[0][:, [0, 1, 2, 4]]).all()


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("padding_mode", lo.PAD_MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_fused_matches_reference(ndim, padding_mode, mode):
    """float64 against the plain-PyTorch reference's autograd."""
    x = torch.randn(SHAPES[ndim], dtype=torch.float64, requires_grad=True)
    g = torch.randn(SHAPES[ndim], dtype=torch.float64)
    for s in shift_sets(x.shape[1], ndim, max(x.shape[2:]), seed=10 + ndim)[1:5]:
        s = s.requires_grad_()
        expected = torch.autograd.grad(reference_shift(x, s, padding_mode, mode), (x, s), g)
        got = ops.shift_backward.default(g, x.detach(), s.detach(), padding_mode, mode)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def _ran_ops(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
def test_autograd_takes_fused_op_for_both_gradients(mode):
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([[0.3, -1.6], [2.5, 0.7], [-0.5, 4.5]], dtype=torch.float64, requires_grad=True)
    g = torch.randn(x.shape, dtype=torch.float64)
    for call in (lambda: lo.shift(x, s, "reflect", mode), lambda: ops.shift.default(x, s, "reflect", mode)):
        grads = []
        names = _ran_ops(lambda: grads.extend(torch.autograd.grad(call(), (x, s), g)))
        assert "learnable_ops::shift_backward" in names
        assert "learnable_ops::shift_input_backward" not in names
        assert_matches_separate(grads, separate(g, x.detach(), s.detach(), "reflect", mode), mode)


def test_one_gradient_or_create_graph_takes_separate_ops():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([[0.3, -1.6], [2.5, 0.7], [-0.5, 4.5]], dtype=torch.float64, requires_grad=True)
    g = torch.randn(x.shape, dtype=torch.float64)
    names = _ran_ops(lambda: torch.autograd.grad(lo.shift(x, s.detach(), "border", "active"), x, g))
    assert "learnable_ops::shift_input_backward" in names and "learnable_ops::shift_backward" not in names
    names = _ran_ops(lambda: torch.autograd.grad(lo.shift(x.detach(), s, "border", "active"), s, g))
    assert "learnable_ops::shift_shifts_backward" in names and "learnable_ops::shift_backward" not in names
    out = lo.shift(x, s, "border", "active")
    gx, gs = torch.autograd.grad(out, (x, s), g, create_graph=True)
    assert gx.requires_grad and gs.requires_grad
    expected = separate(g, x.detach(), s.detach(), "border", "active")
    assert torch.equal(gx.detach(), expected[0]) and torch.equal(gs.detach(), expected[1])


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_opcheck(ndim, mode):
    x = torch.randn(SHAPES[ndim], dtype=torch.float64, requires_grad=True)
    g = torch.randn(SHAPES[ndim], dtype=torch.float64, requires_grad=True)
    s = (torch.randn(x.shape[1], ndim, dtype=torch.float64) * 2).round().add(0.25).requires_grad_()
    testing.check_opcheck(ops.shift_backward.default, (g, x, s, "symmetric", mode))


def test_gradcheck_of_fused_op():
    """Its registered autograd (the sum of the separate ops' formulas), active mode, off the lattice."""
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([[0.3, -1.6], [2.2, 0.7]], dtype=torch.float64, requires_grad=True)
    testing.check_gradcheck(lambda a, b, c: ops.shift_backward.default(a, b, c, "reflect", "active"), [g, x, s])


@pytest.mark.parametrize("mode", lo.SHIFT_MODES)
def test_thread_count_independence(mode):
    x = torch.randn(3, 4, 17, 19, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([[0.3, -1.6], [2.5, 0.7], [-0.5, 4.5], [9.2, -30.7]], dtype=torch.float64, requires_grad=True)
    testing.check_thread_independence(lambda a, b: lo.shift(a, b, "symmetric", mode), [x, s])


def test_compile_fullgraph():
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([[0.3, -1.6], [2.2, 0.7], [-0.5, 4.5]], dtype=torch.float64, requires_grad=True)
    testing.check_compile(lambda a, b: lo.shift(a.sin(), b * 2, "periodic", "active") * 2, [x, s])
    g = torch.randn(x.shape, dtype=torch.float64)
    fn = torch.compile(lambda *a: ops.shift_backward.default(*a, "reflect", "sparse"), fullgraph=True, backend="aot_eager")
    got = fn(g, x.detach(), s.detach())
    for a, b in zip(got, separate(g, x.detach(), s.detach(), "reflect", "sparse")):
        assert torch.equal(a, b)
    torch._dynamo.reset()


def test_empty_non_contiguous_and_channels_last():
    s = torch.tensor([[0.3, -1.6], [2.5, 0.7], [-0.5, 4.5]], dtype=torch.float64)
    empty = torch.randn(0, 3, 4, 5, dtype=torch.float64)
    gx, gs = ops.shift_backward.default(empty, empty, s, "zeros", "active")
    assert gx.shape == empty.shape and torch.equal(gs, torch.zeros_like(s))
    base = torch.randn(2, 6, 9, 14, dtype=torch.float64)
    for x in (base[:, ::2, :, 1:12], base[:, :3].contiguous(memory_format=torch.channels_last), base[:, :3].transpose(2, 3)):
        g = torch.randn(x.shape, dtype=torch.float64).transpose(0, 1).contiguous().transpose(0, 1)
        for mode in lo.SHIFT_MODES:
            fused = ops.shift_backward.default(g, x, s, "periodic", mode)
            assert fused[0].is_contiguous()
            assert_matches_separate(fused, separate(g.contiguous(), x.contiguous(), s, "periodic", mode), mode)


def test_bad_input_names_the_argument():
    x = torch.randn(2, 3, 4, 5)
    s = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="grad_output must have the shape of input"):
        ops.shift_backward.default(x[:, :, :3], x, s, "zeros", "sparse")
    with pytest.raises(TypeError, match="grad_output and input must have the same dtype"):
        ops.shift_backward.default(x.double(), x, s, "zeros", "sparse")
    with pytest.raises(TypeError, match="grad_output must be a floating-point tensor"):
        ops.shift_backward.default(x.int(), x, s, "zeros", "sparse")
    with pytest.raises(ValueError, match="shifts must have shape"):
        ops.shift_backward.default(x, x, torch.zeros(3, 1), "zeros", "sparse")
    with pytest.raises(ValueError, match="unknown mode"):
        ops.shift_backward.default(x, x, s, "zeros", "fast")
    with pytest.raises(ValueError, match="padding_mode"):
        ops.shift_backward.default(x, x, s, "polynomial", "sparse")
