import pytest
import torch

from learnable_ops.benchmarks.convnext import DclsDepthwise, construct_kernel
from learnable_ops.ops.dcls_dispatch import METHODS, choose_method


def test_policy():
    dw = dict(in_channels=96, out_channels=96, groups=96)
    assert choose_method(34, (17, 17), version="v0", **dw) == "sparse"
    assert choose_method(34, (17, 17), version="v1", **dw) == "sparse"
    assert choose_method(34, (17, 17), version="gauss", **dw) == "dense"
    assert choose_method(200, (17, 17), version="v0", **dw) == "dense"
    assert choose_method(2, (3, 3), version="gauss", **dw) == "dense"
    assert choose_method(2, (3, 3), version="gauss", device="cuda", **dw) == "construct"
    assert choose_method(4, (9,), version="v1", **dw) == "sparse"
    assert choose_method(34, (17, 17), version="v0", in_channels=96, out_channels=96, groups=1) == "construct"
    assert choose_method(8, (5, 5, 5), version="v0", **dw) == "construct"
    assert choose_method(34, (17, 17), version="v0", device="cuda", **dw) == "sparse"
    assert set(METHODS) == {"auto", "dense", "sparse", "construct"}


@pytest.mark.parametrize("version", ["v0", "v1", "gauss"])
def test_every_method_gives_the_same_result(version):
    """Dispatch never changes results beyond float tolerance (values and gradients)."""
    torch.manual_seed(1)
    layer = DclsDepthwise(6, kernel_count=5, dilated_kernel_size=7, version=version, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
        layer.P.uniform_(-3.6, 3.6)
    x = torch.randn(2, 6, 11, 12, dtype=torch.float64, requires_grad=True)
    methods = ["dense", "construct"] + (["sparse"] if version != "gauss" else [])
    results = []
    for method in methods:
        layer.method = method
        out = layer(x)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum(),
                                    [x] + [p for p in layer.parameters()])
        results.append((out, grads))
    for out, grads in results[1:]:
        torch.testing.assert_close(out, results[0][0])
        for a, b in zip(grads, results[0][1]):
            torch.testing.assert_close(a, b)


def test_construct_kernel_reference_shape():
    W = torch.randn(4, 1, 3, dtype=torch.float64)
    P = torch.zeros(2, 4, 1, 3, dtype=torch.float64)
    K = construct_kernel(W, P, None, (5, 7), "v0")
    assert K.shape == (4, 1, 5, 7)
    torch.testing.assert_close(K[:, 0, 2, 3], W.sum(-1)[:, 0])


def test_convnext_surgery_on_a_timm_shaped_model():
    """benchmarks/convnext.py replaces every block's conv_dw (timm's ConvNeXt layout)."""
    from torch import nn

    from learnable_ops.benchmarks.convnext import chosen_methods, dcls_convnext

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv_dw = nn.Conv2d(c, c, 7, padding=3, groups=c)

        def forward(self, x):
            return x + self.conv_dw(x)

    class Stage(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.blocks = nn.Sequential(Block(c), Block(c))

        def forward(self, x):
            return self.blocks(x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stages = nn.Sequential(Stage(4), nn.Conv2d(4, 8, 1), Stage(8))

        def forward(self, x):
            return self.stages(x)

    net = Net()
    net.stages[1].blocks = nn.Sequential()  # the 1x1 conv has no blocks to replace
    for version, method in (("v0", "sparse"), ("gauss", "dense")):
        dcls = dcls_convnext(net, version, kernel_count=3, dilated_kernel_size=5)
        x = torch.randn(1, 4, 9, 9)
        assert chosen_methods(dcls, x) == {4: method, 8: method}
        assert dcls(x).shape == (1, 8, 9, 9)
        assert isinstance(net.stages[0].blocks[0].conv_dw, nn.Conv2d)
