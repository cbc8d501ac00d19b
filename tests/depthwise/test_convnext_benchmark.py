"""The ConvNeXt benchmark's model building and cases, on a tiny timm-shaped stand-in (CPU, no timm)."""

import sys
import types

import pytest
import torch
from torch import nn

from learnable_ops.benchmarks import convnext
from learnable_ops.nn import Dcls2d


class Block(nn.Module):
    """timm's ConvNeXt block layout: ``conv_dw`` (7x7 depthwise, padding 3), norm, MLP, residual."""

    def __init__(self, c):
        super().__init__()
        self.conv_dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.GroupNorm(1, c)
        self.pwconv = nn.Conv2d(c, c, 1)

    def forward(self, x):
        return x + self.pwconv(self.norm(self.conv_dw(x)))


class Stage(nn.Module):
    def __init__(self, cin, c, depth):
        super().__init__()
        self.downsample = nn.Conv2d(cin, c, 2, stride=2) if cin != c else nn.Identity()
        self.blocks = nn.Sequential(*[Block(c) for _ in range(depth)])

    def forward(self, x):
        return self.blocks(self.downsample(x))


class TinyConvNeXt(nn.Module):
    """Stem (4x4, stride 4), two stages, a 3x3 depthwise conv that must stay, a 1000-way head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 4, stride=4)
        self.stages = nn.Sequential(Stage(4, 4, 2), Stage(4, 8, 1))
        self.dw3 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.head = nn.Linear(8, 1000)

    def forward(self, x):
        return self.head(self.dw3(self.stages(self.stem(x))).mean((2, 3)))


def test_every_7x7_depthwise_conv_becomes_a_dcls2d():
    model = TinyConvNeXt()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    for version in convnext.VERSIONS:
        dcls = convnext.dcls_convnext(model, version)
        layers = [(name, m) for name, m in dcls.named_modules() if isinstance(m, Dcls2d)]
        assert [name for name, _ in layers] == [
            "stages.0.blocks.0.conv_dw", "stages.0.blocks.1.conv_dw", "stages.1.blocks.0.conv_dw"
        ]
        for _, layer in layers:
            assert type(layer) is Dcls2d
            assert layer.kernel_count == 34 and layer.dilated_kernel_size == (17, 17)
            assert layer.padding == (8, 8) and layer.stride == (1, 1)
            assert layer.groups == layer.in_channels == layer.out_channels
            assert layer.version == version and layer.method == "auto"
            assert layer.bias is not None
            assert (layer.SIG is not None) == (version == "gauss")
        # The stem, the downsampling, the 1x1 and the 3x3 depthwise conv are untouched.
        for name in ("stem", "stages.1.downsample", "stages.0.blocks.0.pwconv", "dw3"):
            assert type(dcls.get_submodule(name)) is nn.Conv2d
        # The original model is not modified.
        assert type(model.stages[0].blocks[0].conv_dw) is nn.Conv2d
        torch.testing.assert_close(model(x), expected)

        out = dcls(x)
        assert out.shape == expected.shape
        out.square().mean().backward()
        for _, layer in layers:
            for p in (layer.weight, layer.P, layer.bias) + ((layer.SIG,) if version == "gauss" else ()):
                assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0


def test_a_model_without_7x7_depthwise_convs_is_refused():
    with pytest.raises(ValueError, match="no 7x7 depthwise"):
        convnext.dcls_convnext(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=4)), "v0")


def test_chosen_methods_records_the_dispatch_of_each_layer():
    dcls = convnext.dcls_convnext(TinyConvNeXt(), "v0").eval()
    x = torch.randn(1, 3, 32, 32)

    def run(dtype=None):
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return dcls(x)

    # CPU policy: 34 taps * 4 corners <= 289 cells: sparse for v0; autocast keeps construct.
    assert convnext.chosen_methods(dcls, run) == {"4x8x8": "sparse", "8x4x4": "sparse"}
    assert convnext.chosen_methods(dcls, lambda: run(torch.bfloat16)) == {"4x8x8": "construct", "8x4x4": "construct"}
    gauss = convnext.dcls_convnext(TinyConvNeXt(), "gauss").eval()
    with torch.no_grad():
        assert convnext.chosen_methods(gauss, lambda: gauss(x)) == {"4x8x8": "dense", "8x4x4": "dense"}
    # The hooks are gone afterwards.
    assert all(not m._forward_pre_hooks for m in dcls.modules())


def test_inference_keeps_the_eval_kernel_cache():
    """The timed call must not rebuild the kernel a user's eval-mode model caches."""
    dcls = convnext.dcls_convnext(TinyConvNeXt(), "gauss")
    run = convnext._inference(dcls, torch.randn(1, 3, 32, 32), None)
    run()
    layer = dcls.stages[0].blocks[0].conv_dw
    cached = layer._kernel_cache[2]
    run()
    assert layer._kernel_cache[2] is cached
    assert not dcls.training


def test_cases_skip_without_timm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    assert convnext.cases("cpu", "small") == []
    assert "timm is not installed" in capsys.readouterr().out


def test_cases_run_on_a_stand_in_timm(monkeypatch):
    fake = types.ModuleType("timm")
    created = []

    def create_model(name, pretrained=False):
        assert name == "convnext_tiny" and not pretrained
        created.append(TinyConvNeXt())
        return created[-1]

    fake.create_model = create_model
    monkeypatch.setitem(sys.modules, "timm", fake)
    cases = convnext.cases("cpu", "small")
    assert [c.name for c in cases] == [
        f"convnext_tiny-dcls {v} {what}" for v in convnext.VERSIONS
        for what in ("inference fp32", "inference bf16 autocast", "train step bf16 autocast")
    ]
    for case in cases:
        assert case.extra["methods"]
        case.candidate()
        case.baseline()
    # The baseline model itself is never converted.
    assert type(created[0].stages[0].blocks[0].conv_dw) is nn.Conv2d
