"""The padded path's two ways of building its polynomially padded input
(LEARNABLE_OPS_DIFFCONV_PAD, cpp/diffconv.cpp): one pad op call over the whole
tensor ("gather", the default) or the image copied into the padded buffer plus
the rings from the pad op on the node bands of both edges ("assemble"). Both
must give the same values and gradients, and match the transformed-kernel
definition, in float64."""

import pytest
import torch

import learnable_ops as lo
import learnable_ops.ops.diffconv as dc

from test_diffconv import make, reference

ENV = "LEARNABLE_OPS_DIFFCONV_PAD"

CASES = [
    # (x shape, w shape, stride, dilation, groups, order)
    ((2, 3, 9, 11), (4, 3, 3, 3), (1, 1), (1, 1), 1, None),
    ((1, 2, 12, 10), (2, 2, 5, 5), (1, 1), (1, 1), 1, None),
    ((1, 2, 12, 10), (2, 2, 5, 5), (1, 1), (1, 1), 1, (2, 1)),
    ((2, 4, 10, 13), (4, 1, 3, 5), (1, 1), (1, 1), 4, None),  # depthwise, rectangular
    ((1, 2, 15, 14), (3, 2, 3, 3), (2, 3), (1, 1), 1, None),  # stride
    ((1, 2, 16, 17), (2, 2, 3, 5), (1, 1), (2, 3), 1, None),  # dilation
    ((1, 2, 6, 9), (2, 2, 5, 3), (1, 1), (1, 1), 1, None),  # node bands of both edges overlap
    ((1, 2, 7, 7), (2, 2, 7, 7), (2, 2), (1, 1), 1, None),  # image as small as the kernel
    ((1, 2, 5, 8), (2, 2, 1, 3), (1, 1), (1, 1), 1, None),  # no ring along H
]


def _run(x, w, stride, dilation, groups, order):
    x = x.detach().requires_grad_()
    w = w.detach().requires_grad_()
    out = lo.diff_conv2d(x, w, stride=stride, dilation=dilation, groups=groups, order=order)
    grad = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    gx, gw = torch.autograd.grad(out, (x, w), grad)
    return out.detach(), gx, gw


@pytest.fixture
def padded_path_only(monkeypatch):
    # On the CPU stride-1 calls take the ring path; force the padded path (the diff_conv2d op).
    monkeypatch.setattr(dc, "_ring_pays", lambda *args: False)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_assembled_pad_equals_gathered_pad(case, monkeypatch, padded_path_only):
    shape_x, shape_w, stride, dilation, groups, order = case
    x, w = make(shape_x, shape_w, groups)
    monkeypatch.setenv(ENV, "gather")
    expected = _run(x, w, stride, dilation, groups, order)
    monkeypatch.setenv(ENV, "assemble")
    got = _run(x, w, stride, dilation, groups, order)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-11, rtol=1e-11)
    if order is None:
        torch.testing.assert_close(got[0], reference(x.detach(), w.detach(), None, stride, dilation, groups),
                                   atol=1e-8, rtol=1e-8)


def test_assembled_pad_channels_last_and_low_precision(monkeypatch, padded_path_only):
    x, w = make((2, 3, 10, 12), (3, 3, 5, 5))
    for dtype in (torch.float32, torch.bfloat16):
        xc = x.detach().to(dtype).contiguous(memory_format=torch.channels_last)
        wc = w.detach().to(dtype)
        monkeypatch.setenv(ENV, "gather")
        expected = lo.diff_conv2d(xc, wc, order=2)
        monkeypatch.setenv(ENV, "assemble")
        got = lo.diff_conv2d(xc, wc, order=2)
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(got.float(), expected.float(), atol=tol * float(expected.float().abs().max()), rtol=tol)


def test_unknown_setting_is_rejected(monkeypatch, padded_path_only):
    x, w = make((1, 2, 8, 8), (2, 2, 3, 3))
    monkeypatch.setenv(ENV, "fast")
    with pytest.raises(ValueError, match="LEARNABLE_OPS_DIFFCONV_PAD"):
        lo.diff_conv2d(x, w)
