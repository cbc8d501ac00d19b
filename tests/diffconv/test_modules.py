"""learnable_ops.nn.DiffConv2d and the compatibility API of the original code."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import learnable_ops as lo
from learnable_ops import testing
from learnable_ops.compat import diff_conv2d as compat


def test_module_matches_functional_and_conv_interior():
    torch.manual_seed(0)
    layer = lo.nn.DiffConv2d(4, 6, (3, 5), stride=(1, 2), dilation=(2, 1), groups=2, dtype=torch.float64)
    x = torch.randn(2, 4, 13, 14, dtype=torch.float64)
    y = layer(x)
    want = lo.diff_conv2d(x, layer.weight, layer.bias, (1, 2), (2, 1), 2)
    torch.testing.assert_close(y, want)
    conv = F.conv2d(x, layer.weight, layer.bias, (1, 2), (2, 2), (2, 1), 2)
    torch.testing.assert_close(y[:, :, 2:-2, 1:-1], conv[:, :, 2:-2, 1:-1])
    assert "kernel_size=(3, 5)" in repr(layer) and "groups=2" in repr(layer)


def test_train_edge_kernel_has_its_own_weight_and_bias():
    torch.manual_seed(0)
    layer = lo.nn.DiffConv2d(2, 3, 3, train_edge_kernel=True, dtype=torch.float64)
    assert {n for n, _ in layer.named_parameters()} == {"weight", "bias", "edge_weight", "edge_bias"}
    torch.testing.assert_close(layer.edge_weight, layer.weight)  # starts as plain DiffConv2d
    with torch.no_grad():
        layer.edge_weight.add_(1.0)
        layer.edge_bias.add_(5.0)
    x = torch.randn(1, 2, 8, 9, dtype=torch.float64)
    y = layer(x)
    y.sum().backward()
    # The edge bias reaches the boundary outputs and receives their gradient.
    assert layer.edge_bias.grad is not None and torch.all(layer.edge_bias.grad == 8 * 9 - 6 * 7)
    assert torch.all(layer.bias.grad == 6 * 7)
    plain = lo.diff_conv2d(x, layer.edge_weight, layer.edge_bias)
    torch.testing.assert_close(y[..., 0, :], plain[..., 0, :])
    torch.testing.assert_close(y[..., 1:-1, 1:-1], F.conv2d(x, layer.weight, layer.bias))


def test_from_conv():
    conv = nn.Conv2d(4, 8, 5, padding=2, groups=2, dtype=torch.float64)
    layer = lo.nn.DiffConv2d.from_conv(conv, train_edge_kernel=True)
    x = torch.randn(2, 4, 11, 12, dtype=torch.float64)
    torch.testing.assert_close(layer(x)[..., 2:-2, 2:-2], conv(x)[..., 2:-2, 2:-2])
    assert layer.groups == 2 and layer.weight.dtype == torch.float64
    torch.testing.assert_close(layer.edge_bias, conv.bias)
    dilated = lo.nn.DiffConv2d.from_conv(nn.Conv2d(2, 2, 3, padding="same", dilation=2).eval())
    assert dilated.dilation == (2, 2) and not dilated.training
    with pytest.raises(ValueError, match="'same'-padded"):
        lo.nn.DiffConv2d.from_conv(nn.Conv2d(2, 2, 3))
    with pytest.raises(TypeError, match="nn.Conv2d"):
        lo.nn.DiffConv2d.from_conv(nn.Linear(2, 2))


def test_module_bad_arguments():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        lo.nn.DiffConv2d(2, 2, 4)
    with pytest.raises(ValueError, match="order must be in"):
        lo.nn.DiffConv2d(2, 2, 3, order=3)
    with pytest.raises(ValueError, match="divisible by groups"):
        lo.nn.DiffConv2d(3, 2, 3, groups=2)


def test_module_compile_and_gradcheck():
    layer = lo.nn.DiffConv2d(2, 2, 3, dtype=torch.float64)
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    testing.check_compile(layer, [x])
    testing.check_gradcheck(layer, [x], fast_mode=True)


def test_compat_functional():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    we = torch.randn(4, 2, 5, 5, dtype=torch.float64)
    model = compat.DiffConv2d(5)
    for mode in ("speed", "memory"):
        y = model.conv2d(x, w, groups=2, keep_img_grad_at_invalid=False, edge_kernel=we, optimized_for=mode)
        torch.testing.assert_close(y, lo.diff_conv2d(x, w, groups=2, keep_img_grad_at_invalid=False, edge_weight=we))
    with pytest.raises(ValueError, match="optimized_for"):
        model.conv2d(x, w, groups=2, optimized_for="fast")
    with pytest.raises(ValueError, match="weight must be"):
        compat.DiffConv2d(3).conv2d(x, w, groups=2)
    with pytest.raises(ValueError, match="kernel_size must be a positive odd int"):
        compat.DiffConv2d(4)


@pytest.mark.parametrize("optimized_for", ["speed", "memory"])
def test_compat_layer_with_edge_kernel_and_bias(optimized_for):
    # The original crashed ('memory') or dropped the edge bias ('speed') here.
    layer = compat.DiffConv2dLayer(2, 4, 3, groups=2, bias=True, train_edge_kernel=True, optimized_for=optimized_for)
    y = layer(torch.randn(2, 2, 8, 8))
    y.sum().backward()
    assert y.shape == (2, 4, 8, 8)
    assert layer.edge_bias.grad is not None and layer.edge_weight.grad is not None
    assert isinstance(layer, lo.nn.DiffConv2d) and layer.optimized_for == optimized_for
