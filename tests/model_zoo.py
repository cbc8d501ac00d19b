"""Small but real model definitions for the converter and integration tests.

Each builder returns a model and an input shape; ``DEPTHWISE`` counts the
depthwise convolutions (the default conversion's candidates) of each model.
The models follow their papers' block structure at toy widths so that CPU
tests stay fast on two cores.
"""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
from torch import nn
from torch.nn import functional as F


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (ConvNeXt's downsampling norm)."""

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(
            0, 3, 1, 2
        )


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7, LayerNorm, MLP (4x), layer scale, residual."""

    def __init__(self, dim: int, layer_scale: float = 1e-1):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x):
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.mlp(self.norm(y)) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtStage(nn.Module):
    """A ConvNeXt stage: LayerNorm + 2x2 stride-2 conv downsampling, then ``depth`` blocks."""

    def __init__(self, in_dim: int = 4, dim: int = 8, depth: int = 2):
        super().__init__()
        self.downsample = nn.Sequential(LayerNorm2d(in_dim), nn.Conv2d(in_dim, dim, 2, stride=2))
        self.blocks = nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(depth)))

    def forward(self, x):
        return self.blocks(self.downsample(x))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, depthwise 3x3 (stride s), linear 1x1 projection."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_residual = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers += [nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Stack(nn.Module):
    """MobileNetV2 stem, three inverted residuals (t=1; stride 2; residual) and a classifier."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6())
        self.features = nn.Sequential(
            InvertedResidual(width, width, 1, 1),
            InvertedResidual(width, 2 * width, 2, 3),
            InvertedResidual(2 * width, 2 * width, 1, 3),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x):
        x = self.features(self.stem(x))
        return self.classifier(x.mean((2, 3)))


class AudioConvNet(nn.Module):
    """A 1D audio ConvNet on stereo input: dense front end, depthwise-separable blocks (one dilated, one
    with channel multiplier 2), global pooling and a classifier."""

    def __init__(self, in_channels: int = 2, width: int = 8, num_classes: int = 5):
        super().__init__()
        self.front = nn.Sequential(nn.Conv1d(in_channels, width, 5, stride=2, padding=2), nn.BatchNorm1d(width), nn.ReLU())
        self.block1 = nn.Sequential(
            nn.Conv1d(width, width, 9, padding=4, groups=width),
            nn.Conv1d(width, width, 1),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        self.block2 = nn.Sequential(
            nn.Conv1d(width, width, 5, padding=4, dilation=2, groups=width),
            nn.Conv1d(width, width, 1),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        self.block3 = nn.Sequential(
            nn.Conv1d(width, 2 * width, 3, padding=1, groups=width),
            nn.Conv1d(2 * width, width, 1),
            nn.BatchNorm1d(width),
            nn.ReLU(),
        )
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.front(x))))
        return self.head(x.mean(-1))


class VideoBlock(nn.Module):
    """An X3D-style 3D block: dense stem, 1x1x1 expansion, depthwise 3x3x3 and temporal
    (3, 1, 1) depthwise convs, 1x1x1 projection, residual."""

    def __init__(self, in_channels: int = 3, width: int = 4):
        super().__init__()
        self.stem = nn.Conv3d(in_channels, width, (1, 3, 3), padding=(0, 1, 1))
        self.expand = nn.Sequential(nn.Conv3d(width, 2 * width, 1, bias=False), nn.BatchNorm3d(2 * width), nn.ReLU())
        self.conv_dw = nn.Conv3d(2 * width, 2 * width, 3, padding=1, groups=2 * width, bias=False)
        self.conv_t = nn.Conv3d(2 * width, 2 * width, (3, 1, 1), padding=(1, 0, 0), groups=2 * width)
        self.project = nn.Sequential(nn.BatchNorm3d(2 * width), nn.ReLU(), nn.Conv3d(2 * width, width, 1))

    def forward(self, x):
        x = self.stem(x)
        return x + self.project(self.conv_t(self.conv_dw(self.expand(x))))


class QuantizableInvertedResidual(InvertedResidual):
    """InvertedResidual whose residual addition eager-mode quantization can handle."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.use_residual:
            self.skip_add = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, x):
        return self.skip_add.add(x, self.conv(x)) if self.use_residual else self.conv(x)


class QuantizableMobileNetV2Stack(MobileNetV2Stack):
    """MobileNetV2Stack with Quant/DeQuant stubs and quantizable residuals and pooling."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 8):
        super().__init__(in_channels, num_classes, width)
        self.features = nn.Sequential(
            QuantizableInvertedResidual(width, width, 1, 1),
            QuantizableInvertedResidual(width, 2 * width, 2, 3),
            QuantizableInvertedResidual(2 * width, 2 * width, 1, 3),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.quant = torch.ao.quantization.QuantStub()
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.pool(self.features(self.stem(self.quant(x))))
        return self.dequant(self.classifier(x.flatten(1)))


MODELS = {
    "convnext_stage": (ConvNeXtStage, (2, 4, 16, 16)),
    "mobilenet_v2_stack": (MobileNetV2Stack, (2, 3, 12, 12)),
    "audio_convnet": (AudioConvNet, (2, 2, 64)),
    "video_block": (VideoBlock, (1, 3, 4, 6, 6)),
}
"""name -> (model class, input shape)."""

DEPTHWISE = {"convnext_stage": 2, "mobilenet_v2_stack": 3, "audio_convnet": 3, "video_block": 2}
"""name -> number of depthwise convs (what ``convert``'s default filter selects)."""


def build(name: str, dtype: torch.dtype = torch.float64, seed: int = 0):
    """A model in eval mode with BatchNorm statistics randomised (so BN is not the identity), and an input."""
    cls, shape = MODELS[name]
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = cls().to(dtype)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen, dtype=dtype) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen, dtype=dtype) + 0.5)
    model.eval()
    x = torch.randn(shape, generator=gen, dtype=dtype)
    return model, x


TARGET_LAYERS = {"dcls": ("Dcls1d", "Dcls2d", "Dcls3d"), "shift": ("Shift1d", "Shift2d", "Shift3d"), "diffconv": ("DiffConv2d",)}
"""target -> the learnable_ops.nn classes it produces."""

def clone_conv(module: nn.Module, fqn: str) -> nn.Module:
    """A callable target that rebuilds the conv: checks the test harness without any layer family."""
    return copy.deepcopy(module)


CONFIGS = {
    "callable": (clone_conv, {}),
    "dcls-v1": ("dcls", {}),
    "dcls-gauss-recipe": ("dcls", {"kernel_count": 6, "dilated_kernel_size": 9, "version": "gauss", "share_positions": "by_channels"}),
    "shift-sparse": ("shift", {}),
    "shift-active": ("shift", {"mode": "active"}),
    "diffconv": ("diffconv", {}),
}
"""Conversions exercised by the integration tests: config name -> (target, layer kwargs)."""


def require_config(config: str) -> None:
    target = CONFIGS[config][0]
    if isinstance(target, str):
        require(target)


def layers_available(target: str) -> bool:
    try:
        lo_nn = importlib.import_module("learnable_ops.nn")
    except ImportError:
        return False
    return all(hasattr(lo_nn, name) for name in TARGET_LAYERS[target])


def require(target: str) -> None:
    """Skips the calling test while the target's layers are not part of the package."""
    if not layers_available(target):
        pytest.skip(f"learnable_ops.nn lacks {'/'.join(TARGET_LAYERS[target])} (target {target!r})")
