"""The CUDA pad kernels, run on the CPU.

``pad_cuda_emulation.cpp`` compiles the kernel bodies of ``cuda/pad_kernels.cuh``
with the host C++ compiler and replays every block and thread of a launch; these
tests compare it, in float64, with the CPU op for every mode, 1 to 3 spatial
dimensions, pads larger than the input, crops and polynomial orders, under
table budgets that force each axis into the inline fallback, small grids (so
the grid-stride loops wrap), 32- and 64-bit indices and both store paths. This
checks the GPU index arithmetic on machines without a GPU; the ``cuda`` tests
in test_pad.py check the real thing.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import learnable_ops as lo

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("pad_cuda_emulation.cpp")
MODE_IDS = {"zeros": 0, "border": 1, "periodic": 2, "reflect": 3, "symmetric": 4, "polynomial": 5}
SHAPES = {1: (2, 3, 9), 2: (2, 2, 5, 8), 3: (1, 2, 3, 4, 6)}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no host C++ compiler")
    binary = tmp_path_factory.mktemp("pad_emulation") / "pad_cuda_emulation"
    cmd = [compiler, "-std=c++17", "-O1", f"-I{ROOT / 'cpp' / 'include'}", f"-I{ROOT / 'cuda'}", str(SOURCE), "-o", str(binary)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return binary


def geometry(shape, pad):
    """(in, out, before) per axis D, H, W, as make_pad_plan expands them."""
    nsp = len(shape) - 2
    size_in, size_out, before = [1, 1, 1], [1, 1, 1], [0, 0, 0]
    for k in range(nsp):
        axis, n = 2 - k, shape[-1 - k]
        size_in[axis], before[axis], size_out[axis] = n, pad[2 * k], n + pad[2 * k] + pad[2 * k + 1]
    return size_in, size_out, before


def per_axis(values, nsp, default):
    full = [default] * 3
    for k in range(nsp):
        full[3 - nsp + k] = values[0] if len(values) == 1 else values[k]
    return full


def emulate(binary, src, shape, pad, mode, *, forward, order=None, dilation=None, bits=32, budget=16384, blocks=5, threads=64, misalign=0, dtype="float64", split=False):
    nsp = len(shape) - 2
    size_in, size_out, before = geometry(shape, pad)
    orders = per_axis(order or [0], nsp, 0)
    steps = per_axis(dilation or [1], nsp, 1)
    batch = int(np.prod(shape[:2]))
    # split: the polynomial forward as the copy box, then the ring (LEARNABLE_OPS_PAD_POLY_SPLIT=1).
    direction = ("forward_split" if split else "forward") if forward else "backward"
    args = [direction, MODE_IDS[mode], bits, budget, blocks, threads, misalign, batch]
    args += size_in + size_out + before + orders + steps + [dtype]
    result = subprocess.run([str(binary)] + [str(a) for a in args], input=src.contiguous().numpy().tobytes(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    out_shape = list(shape[:2]) + [n + pad[2 * (nsp - 1 - k)] + pad[2 * (nsp - 1 - k) + 1] for k, n in enumerate(shape[2:])]
    return torch.from_numpy(np.frombuffer(result.stdout, dtype=np.float64).copy()).view(out_shape if forward else list(shape))


def check(binary, x, pad, mode, rng, **kw):
    """Forward and backward of the emulated kernels against the CPU op.

    Index modes copy and sum the same terms (in another order for the
    gradient); polynomial weights reach ~1e2 per axis far out, and the CPU
    kernel applies the axes in another order, hence the looser tolerance.
    """
    poly = {k: kw.pop(k) for k in ("order", "dilation") if k in kw}
    tol = 1e-10 if poly else 1e-12
    want = lo.pad(x, pad, mode, **poly)
    got = emulate(binary, x, x.shape, pad, mode, forward=True, **poly, **kw)
    torch.testing.assert_close(got, want, atol=tol, rtol=tol, msg=lambda m: f"forward {mode} {pad} {poly} {kw}: {m}")
    g = torch.randn(want.shape, dtype=torch.float64, generator=rng)
    want_grad = torch.ops.learnable_ops.pad_backward(g, list(x.shape), pad, mode, poly.get("order"), poly.get("dilation"))
    got_grad = emulate(binary, g, x.shape, pad, mode, forward=False, **poly, **kw)
    torch.testing.assert_close(got_grad, want_grad, atol=tol, rtol=tol, msg=lambda m: f"backward {mode} {pad} {poly} {kw}: {m}")


def random_pad(shape, rng, low=-0.9, high=2.5):
    pad = []
    for n in reversed(shape[2:]):
        while True:
            b, e = (int(v) for v in rng.integers(int(low * n), int(high * n) + 2, size=2))
            if n + b + e >= 1:
                break
        pad += [b, e]
    return pad


LAUNCHES = [
    dict(),  # default budget: every axis tabled
    dict(budget=0, blocks=3, threads=32),  # every axis inline
    dict(budget=160, blocks=2, threads=96),  # W may fit, D/H fall back
    dict(budget=16384, blocks=1, threads=32, misalign=1, bits=64),  # one block, scalar stores
]


@pytest.mark.parametrize("mode", ["zeros", "border", "periodic", "reflect", "symmetric"])
@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_index_modes(emulator, mode, nsp):
    rng = np.random.default_rng(100 * nsp + MODE_IDS[mode])
    gen = torch.Generator().manual_seed(nsp)
    x = torch.randn(SHAPES[nsp], dtype=torch.float64, generator=gen)
    for launch in LAUNCHES:
        for _ in range(2):
            check(emulator, x, random_pad(x.shape, rng), mode, gen, **launch)
    # Pads far larger than the input, and crops only.
    check(emulator, x, [3 * n + 1 for n in reversed(x.shape[2:]) for _ in range(2)], mode, gen, budget=256)
    check(emulator, x, [-(n // 2) if k else 0 for n in reversed(x.shape[2:]) for k in range(2)], mode, gen)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "symmetric"])
def test_widths_and_vector_stores(emulator, mode):
    # Output widths that are and are not multiples of 4, aligned and not.
    rng = np.random.default_rng(7)
    gen = torch.Generator().manual_seed(7)
    for width in (1, 2, 3, 4, 5, 7, 8, 13, 16, 33):
        x = torch.randn(2, 3, 3, width, dtype=torch.float64, generator=gen)
        for misalign in (0, 1):
            pad = [int(v) for v in rng.integers(0, 4, size=2)] + [1, 1]
            pad[1] += (-(width + pad[0] + pad[1])) % 4 if misalign == 0 else 0
            check(emulator, x, pad, mode, gen, misalign=misalign, threads=32, blocks=4)


@pytest.mark.parametrize("nsp", [1, 2, 3])
def test_polynomial(emulator, nsp):
    rng = np.random.default_rng(50 + nsp)
    gen = torch.Generator().manual_seed(nsp)
    shape = list(SHAPES[nsp])
    shape[2:] = [max(n, 7) for n in shape[2:]]
    x = torch.randn(shape, dtype=torch.float64, generator=gen)
    for trial, launch in enumerate(LAUNCHES * 2):
        order = [int(v) for v in rng.integers(0, 3, size=nsp)]
        dilation = [int(v) for v in rng.integers(1, 3, size=nsp)] if trial % 2 else [1] * nsp
        pad = [int(v) for v in rng.integers(-3, 8, size=2 * nsp)]
        check(emulator, x, pad, "polynomial", gen, order=order, dilation=dilation, **launch)
    # Far beyond the input, the DiffConv2d case (order K - 1, pad K // 2), a crop.
    check(emulator, x, ([20, 31] if nsp < 3 else [9, 12]) * nsp, "polynomial", gen, order=[1], budget=512)
    check(emulator, x, [2, 2] * nsp, "polynomial", gen, order=[4])
    check(emulator, x, [-2, 3] * nsp, "polynomial", gen, order=[2], budget=0)


def test_fallback_run_covers_the_interior(emulator):
    # Inline W axis (budget 0): the interior of a reflect axis is one run of
    # single preimages after input 0 (also single) and the pad band; every
    # element must still come out right whichever path it takes.
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 40, dtype=torch.float64, generator=gen)
    for mode in ("reflect", "symmetric", "periodic", "border"):
        for pad in ([3, 2], [1, 1], [0, 5], [-4, 39], [45, -3]):
            check(emulator, x, pad, mode, gen, budget=0, threads=32, blocks=2)


@pytest.mark.parametrize(
    "mode,pad,expected",
    [
        # Input 0 of a reflect axis is single too (first run [0, 1)); the fast
        # path must take the interior run after the pad band, not that one.
        ("reflect", [3, 2], (4, 37)),
        ("symmetric", [3, 2], (3, 38)),
        ("periodic", [3, 2], (2, 37)),
        ("border", [3, 2], (1, 39)),
        ("zeros", [3, 2], (0, 40)),
        ("reflect", [-5, 4], (5, 35)),
        ("polynomial", [3, 2], (3, 37)),
    ],
)
def test_fallback_fast_path_is_the_whole_interior(emulator, mode, pad, expected):
    size_in, size_out, before = geometry((1, 1, 40), pad)
    args = ["runs", MODE_IDS[mode], 64, 0, 1, 32, 0, 1] + size_in + size_out + before + [0, 0, 2] + [1, 1, 1]
    result = subprocess.run([str(emulator)] + [str(a) for a in args], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lo_, hi, shift = (int(v) for v in result.stdout.split("\n")[2].split())
    assert (lo_, hi, shift) == (*expected, pad[0])


@pytest.mark.parametrize("divisor", [1, 2, 3, 7, 130, 134, 4097, 65537, 2**30 - 1, 2**30, 2**30 + 1, 2**31 - 1])
def test_divider(emulator, divisor):
    # The 32-bit polynomial kernel divides by multiply-high and shift: exact
    # on [0, 2^31) (checked near 0, near 2^31 and around multiples of d).
    result = subprocess.run([str(emulator), "divider", str(divisor), "0", "100000"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0"]


def polynomial_cases(rng):
    """(shape, pad, order, dilation): the DiffConv2d padded path (order K - 1,
    pad K // 2 on H and W), odd and tiny widths, bands wider than a block's
    pass, crops on one side with an extension on the other, dilation."""
    cases = []
    for k in (3, 5, 7):
        for width in (k, 9, 13, 30, 33):
            cases.append(((2, 3, 11, width), [k // 2] * 4, [k - 1], None))
    cases.append(((1, 2, 10, 21), [1, 2, 0, 3], [2, 1], [1, 2]))
    cases.append(((1, 1, 12, 17), [-3, 5, 4, -2], [1, 3], [3, 1]))
    cases.append(((3, 1, 40), [70, 1], [2], [3]))
    cases.append(((1, 1, 3, 9, 8), [2, -1, 3, 3, -1, 2], [0, 2, 1], [1, 1, 2]))
    for _ in range(4):
        width = int(rng.integers(5, 40))
        order = [int(v) for v in rng.integers(0, 4, size=2)]
        step = [int(v) for v in rng.integers(1, 3, size=2)]
        height = max(8, step[0] * (order[0] + 1))
        width = max(width, step[1] * (order[1] + 1))
        pad = [int(v) for v in rng.integers(-2, 9, size=4)]
        cases.append(((2, 1, height, width), pad, order, step))
    return cases


def polynomial_gradient(g, shape, pad, order, dilation):
    return torch.ops.learnable_ops.pad_backward(g, list(shape), pad, "polynomial", order, dilation)


@pytest.mark.parametrize("bits", [32, 64])
def test_polynomial_copy_and_ring(emulator, bits):
    # Every target element of the polynomial kernel either copies (all three
    # axes in their copy run) or sums its weighted sources; both directions,
    # under both weight sources (tables, or inline when a table exceeds the
    # budget), small grids whose passes wrap, thread counts that are not
    # multiples of 32, and both destination offsets.
    rng = np.random.default_rng(60 + bits)
    gen = torch.Generator().manual_seed(bits)
    launches = [dict(), dict(budget=0, blocks=3, threads=32), dict(budget=64, blocks=2, threads=96, misalign=1), dict(blocks=1, threads=40)]
    for trial, (shape, pad, order, dilation) in enumerate(polynomial_cases(rng)):
        x = torch.randn(shape, dtype=torch.float64, generator=gen)
        want = lo.pad(x, pad, "polynomial", order=order, dilation=dilation)
        g = torch.randn(want.shape, dtype=torch.float64, generator=gen)
        want_grad = polynomial_gradient(g, shape, pad, order, dilation)
        launch = launches[trial % len(launches)]
        for forward, src, expected in ((True, x, want), (False, g, want_grad)):
            kw = dict(forward=forward, order=order, dilation=dilation, bits=bits)
            got = emulate(emulator, src, shape, pad, "polynomial", **kw, **launch)
            torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10, msg=lambda m: f"{forward} {shape} {pad} {order} {dilation} {launch}: {m}")
            # The same result under any other launch, bit for bit.
            other = emulate(emulator, src, shape, pad, "polynomial", **kw, budget=0, blocks=7, threads=33)
            assert torch.equal(got, other), (forward, shape, pad, order, dilation)


def test_polynomial_float32(emulator):
    # float32 (the acc_t of float, half and bfloat16): float weights from the
    # table or computed inline. High orders sum large weights (about 2815 in
    # absolute value at order 6), so the measure is the float64 result of the
    # same inputs: the emulated kernel must be as close to it as the CPU kernel
    # in float32 (within 2x, plus one rounding of the largest value).
    rng = np.random.default_rng(71)
    gen = torch.Generator().manual_seed(71)

    def apply(src, forward, shape, pad, order, dilation):
        if forward:
            return lo.pad(src, pad, "polynomial", order=order, dilation=dilation)
        return polynomial_gradient(src, shape, pad, order, dilation)

    for trial, (shape, pad, order, dilation) in enumerate(polynomial_cases(rng)):
        x = torch.randn(shape, dtype=torch.float32, generator=gen)
        g = torch.randn(apply(x, True, shape, pad, order, dilation).shape, dtype=torch.float32, generator=gen)
        for forward, src in ((True, x), (False, g)):
            truth = apply(src.double(), forward, shape, pad, order, dilation)
            cpu_error = (apply(src, forward, shape, pad, order, dilation).double() - truth).abs().max().item()
            bound = 2 * cpu_error + 1.2e-7 * truth.abs().max().item()
            for budget in (16384, 0):
                got = emulate(emulator, src.double(), shape, pad, "polynomial", forward=forward, order=order, dilation=dilation, budget=budget, bits=32 if trial % 2 else 64, dtype="float32")
                error = (got - truth).abs().max().item()
                assert error <= bound, (forward, shape, pad, order, dilation, budget, error, cpu_error)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("bits", [32, 64])
def test_polynomial_split_kernels_equal_flat(emulator, bits, dtype):
    # The forward as the copy box and then the ring (LEARNABLE_OPS_PAD_POLY_SPLIT=1) gives
    # the flat kernel's result bit for bit: 1D and 2D pads, crops, dilation, pads wider
    # than the input, 3D pads with an unpadded D axis (the split's condition; the others
    # take the flat kernel), every launch shape and weight source; and equals the CPU op.
    rng = np.random.default_rng(90 + bits)
    gen = torch.Generator().manual_seed(90 + bits)
    cases = polynomial_cases(rng) + [((2, 2, 9, 64), [1] * 4, [2], None), ((1, 2, 12, 70), [3] * 4, [6], None),
                                     ((1, 1, 3, 5, 20), [2, 1, 3, 0, 0, 0], [1, 2, 0], None),
                                     ((1, 1, 6, 9), [-2, 3, 0, 0], [2], None), ((1, 1, 6, 9), [0, 0, 2, 2], [1], None)]
    launches = [dict(), dict(budget=0, blocks=3, threads=32), dict(budget=64, blocks=2, threads=96, misalign=1),
                dict(blocks=1, threads=40), dict(blocks=7, threads=33)]
    for trial, (shape, pad, order, dilation) in enumerate(cases):
        x = torch.randn(shape, dtype=torch.float64, generator=gen)
        if dtype == "float32":
            x = x.float().double()
        launch = launches[trial % len(launches)]
        kw = dict(forward=True, order=order, dilation=dilation, bits=bits, dtype=dtype, **launch)
        split = emulate(emulator, x, shape, pad, "polynomial", split=True, **kw)
        flat = emulate(emulator, x, shape, pad, "polynomial", **kw)
        assert torch.equal(split, flat), (shape, pad, order, dilation, launch)
        if dtype == "float64":
            want = lo.pad(x, pad, "polynomial", order=order, dilation=dilation)
            torch.testing.assert_close(split, want, atol=1e-10, rtol=1e-10)
