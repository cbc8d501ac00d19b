"""The tensor-core forward of the depthwise op (cuda/depthwise_mma.cuh; half and bfloat16,
stride 1, kernels up to 17x17; on CUDA behind LEARNABLE_OPS_DEPTHWISE_MMA=1).

``depthwise_mma_emulation.cpp`` replays the kernel on the CPU in float64 with the
kernel's own index maps and a model of the mma instruction written from the PTX ISA's
fragment layouts; the tests compare it with ``F.conv2d`` for the ConvNeXt shapes, planes
cut at the 64x64 tiles, every padding the op takes, the flipped kernel of the input
gradient, no bias, and the small-plane kernel (at most 16x16 outputs, a warp per image); the weight gradient kernel likewise against autograd of
``F.conv2d``. On a GPU the op with the switch on is compared with the CPU op (forward, the
input gradient, which runs the forward kernel flipped, and the weight gradient)."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import learnable_ops as lo
from learnable_ops import testing

ROOT = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("depthwise_mma_emulation.cpp")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    out = tmp_path_factory.mktemp("depthwise_mma")
    return testing.compile_kernel_emulator(SOURCE, out, [ROOT / "cpp" / "include", ROOT / "cuda"])


def run_emulator(binary, args, tensors, shape):
    """Runs the emulator with `args`, the tensors as float64 on stdin; its stdout as `shape`."""
    data = b"".join(t.double().contiguous().numpy().tobytes() for t in tensors)
    result = subprocess.run([binary, *(str(a) for a in args)], input=data, capture_output=True)
    assert result.returncode == 0, (result.returncode, result.stderr.decode())
    return torch.from_numpy(np.frombuffer(result.stdout, dtype=np.float64).copy()).view(*shape)


def emulate(binary, x, w, bias, padding, flip=False, small=False):
    n, c, h, wd = x.shape
    kh, kw = w.shape[-2:]
    top, bottom, left, right = padding
    ho, wo = h + top + bottom - kh + 1, wd + left + right - kw + 1
    args = [n, c, h, wd, kh, kw, top, left, ho, wo, int(flip), int(bias is not None)] + (["small"] if small else [])
    tensors = [x, w.reshape(c, -1)] + ([bias] if bias is not None else [])
    return run_emulator(binary, args, tensors, (n, c, ho, wo))


def reference(x, w, bias, padding):
    top, bottom, left, right = padding
    return F.conv2d(F.pad(x, (left, right, top, bottom)), w.unsqueeze(1), bias, groups=x.shape[1])


# (N, C, H, W), (kh, kw), padding (top, bottom, left, right): ConvNeXt's planes with
# 17x17 and 7x7 kernels ('same'), planes cut at the 64x64 tiles (70, 130), rectangular
# and even kernels, asymmetric and zero padding, one image (a block's single image) and
# three (a block's second image; the last chunk short).
CASES = [
    ((2, 2, 56, 56), (17, 17), (8, 8, 8, 8)),
    ((3, 2, 28, 28), (7, 7), (3, 3, 3, 3)),
    ((1, 3, 14, 14), (17, 17), (8, 8, 8, 8)),
    ((2, 2, 7, 7), (17, 17), (8, 8, 8, 8)),
    ((1, 1, 70, 130), (5, 3), (2, 2, 1, 1)),
    ((2, 1, 66, 65), (4, 6), (1, 2, 3, 2)),
    ((1, 2, 20, 33), (17, 1), (0, 0, 0, 0)),
    ((1, 2, 9, 40), (1, 17), (3, 0, 8, 8)),
    ((1, 1, 64, 64), (16, 16), (7, 8, 7, 8)),
]


@pytest.mark.parametrize("shape,kernel,padding", CASES)
def test_emulated_kernel_matches_conv(emulator, shape, kernel, padding):
    torch.manual_seed(sum(shape) + sum(kernel))
    x = torch.randn(shape, dtype=torch.float64)
    w = torch.randn(shape[1], *kernel, dtype=torch.float64)
    b = torch.randn(shape[1], dtype=torch.float64)
    torch.testing.assert_close(emulate(emulator, x, w, b, padding), reference(x, w, b, padding), rtol=1e-12, atol=1e-12)


# Planes of at most 16x16 outputs (forward_small_kernel): ConvNeXt's 14x14 and 7x7 stages,
# 7 images (blocks of 3: the last one short, one warp of each idle), padding that crops and
# rectangular kernels.
SMALL_CASES = [
    ((7, 2, 14, 14), (17, 17), (8, 8, 8, 8)),
    ((7, 3, 7, 7), (17, 17), (8, 8, 8, 8)),
    ((2, 2, 7, 7), (7, 7), (3, 3, 3, 3)),
    ((4, 1, 16, 12), (5, 3), (2, 2, 1, 1)),
    ((1, 2, 20, 9), (9, 2), (0, 0, 4, 4)),
]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("shape,kernel,padding", SMALL_CASES)
def test_emulated_small_plane_kernel(emulator, shape, kernel, padding, flip):
    torch.manual_seed(sum(shape) + 11)
    x = torch.randn(shape, dtype=torch.float64)
    w = torch.randn(shape[1], *kernel, dtype=torch.float64)
    b = None if flip else torch.randn(shape[1], dtype=torch.float64)
    expected = reference(x, w.flip(-1, -2) if flip else w, b, padding)
    assert expected.shape[-2] <= 16 and expected.shape[-1] <= 16
    got = emulate(emulator, x, w, b, padding, flip=flip, small=True)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape,kernel,padding", CASES[:4])
def test_emulated_flipped_kernel_without_bias(emulator, shape, kernel, padding):
    torch.manual_seed(7)
    x = torch.randn(shape, dtype=torch.float64)
    w = torch.randn(shape[1], *kernel, dtype=torch.float64)
    got = emulate(emulator, x, w, None, padding, flip=True)
    torch.testing.assert_close(got, reference(x, w.flip(-1, -2), None, padding), rtol=1e-12, atol=1e-12)


@pytest.mark.cuda
@testing.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "shape,kernel,padding",
    [
        ((4, 96, 56, 56), (17, 17), "same"),
        ((6, 384, 14, 14), (17, 17), "same"),  # small planes: a warp per image
        ((5, 768, 7, 7), (17, 17), "same"),
        ((3, 5, 70, 130), (7, 5), (1, 2, 3, 0)),
    ],
)
def test_cuda_mma_matches_cpu(monkeypatch, dtype, shape, kernel, padding):
    monkeypatch.setenv("LEARNABLE_OPS_DEPTHWISE_MMA", "1")
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float32)
    w = torch.randn(shape[1], 1, *kernel, dtype=torch.float32) / kernel[0]
    b = torch.randn(shape[1], dtype=torch.float32)
    # Inputs rounded to the dtype; the CPU reference in float32 from the same values.
    xd, wd, bd = (t.to(dtype) for t in (x, w, b))
    expected = lo.depthwise_conv2d(xd.float(), wd.float(), bd.float(), 1, padding)
    xc = xd.cuda().requires_grad_()
    got, kernels = testing.cuda_kernels(lambda: lo.depthwise_conv2d(xc, wd.cuda(), bd.cuda(), 1, padding))
    assert any("depthwise_mma" in k for k in kernels), kernels
    tol = 2e-2 if dtype == torch.bfloat16 else 2e-3
    torch.testing.assert_close(got.float().cpu(), expected, rtol=tol, atol=tol * expected.abs().max().item())
    # The input gradient (the same kernel with the flipped taps) and the weight gradient.
    wc = wd.cuda().requires_grad_()
    out = lo.depthwise_conv2d(xc, wc, bd.cuda(), 1, padding)
    g = torch.randn_like(out)
    (gx, gw), kernels = testing.cuda_kernels(lambda: torch.autograd.grad(out, (xc, wc), g))
    assert sum("depthwise_mma" in k for k in kernels) >= 2, kernels
    xr, wr = xd.float().requires_grad_(), wd.float().requires_grad_()
    gx_ref, gw_ref = torch.autograd.grad(lo.depthwise_conv2d(xr, wr, bd.float(), 1, padding), (xr, wr), g.float().cpu())
    torch.testing.assert_close(gx.float().cpu(), gx_ref, rtol=tol, atol=tol * gx_ref.abs().max().item())
    torch.testing.assert_close(gw.float().cpu(), gw_ref, rtol=tol, atol=tol * gw_ref.abs().max().item())


def emulate_weight_grad(binary, x, grad, kernel, padding):
    n, c, h, wd = x.shape
    top, _, left, _ = padding
    ho, wo = grad.shape[-2:]
    return run_emulator(binary, [n, c, h, wd, *kernel, top, left, ho, wo, 0, 0, "wgrad"], [x, grad], (c, *kernel))


@pytest.mark.parametrize("shape,kernel,padding", CASES)
def test_emulated_weight_gradient_matches_conv(emulator, shape, kernel, padding):
    torch.manual_seed(sum(shape) * 3 + sum(kernel))
    x = torch.randn(shape, dtype=torch.float64)
    w = torch.randn(shape[1], *kernel, dtype=torch.float64, requires_grad=True)
    out = reference(x, w, None, padding)
    g = torch.randn_like(out)
    (expected,) = torch.autograd.grad(out, w, g)
    torch.testing.assert_close(emulate_weight_grad(emulator, x, g, kernel, padding), expected, rtol=1e-11, atol=1e-11)
