"""Converting each test model to each named target: counts, forward+backward, and the
equalities each target promises at initialisation."""

import pathlib
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from learnable_ops.convert import any_conv_with_kernel_gt1, by_name, convert, is_depthwise

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import model_zoo  # noqa: E402

MODELS = list(model_zoo.MODELS)
DIM = {"convnext_stage": 2, "mobilenet_v2_stack": 2, "audio_convnet": 1, "video_block": 3}
# depthwise convs with a channel multiplier (out_channels > in_channels); a shift cannot replace them
MULTIPLIER = {"convnext_stage": 0, "mobilenet_v2_stack": 0, "audio_convnet": 1, "video_block": 0}


def expected_count(name: str, target: str) -> int:
    if target == "diffconv":
        return model_zoo.DEPTHWISE[name] if DIM[name] == 2 else 0
    if target == "shift":
        return model_zoo.DEPTHWISE[name] - MULTIPLIER[name]
    return model_zoo.DEPTHWISE[name]


def capture_inputs(model: nn.Module, names) -> dict:
    """Runs nothing; returns a dict that forward hooks fill with each named module's input."""
    seen = {}
    for name in names:
        model.get_submodule(name).register_forward_hook(lambda m, args, out, name=name: seen.__setitem__(name, args[0]))
    return seen


def fwd_bwd(model, x):
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    return out


@pytest.mark.parametrize("target", ["dcls", "shift", "diffconv"])
@pytest.mark.parametrize("name", MODELS)
def test_each_model_to_each_target_runs_forward_and_backward(name, target):
    model_zoo.require(target)
    model, x = model_zoo.build(name)
    model.train()
    report = convert(model, target)
    assert report.num_replaced == expected_count(name, target)
    layer_types = tuple(getattr(__import__("learnable_ops.nn", fromlist=["x"]), n) for n in model_zoo.TARGET_LAYERS[target])
    assert sum(isinstance(m, layer_types) for m in model.modules()) == report.num_replaced
    convs_left = sum(type(m) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) for m in model.modules())
    assert len(report.skipped) == convs_left
    if target == "diffconv" and DIM[name] != 2:
        assert all("supports (2,)-D convolutions only" in s.reason or s.reason.startswith("not depthwise") for s in report.skipped)
    if target == "shift" and MULTIPLIER[name]:
        assert sum("keeps the channel count" in s.reason for s in report.skipped) == MULTIPLIER[name]
    out = fwd_bwd(model, x)
    assert out.shape == model_zoo.build(name)[0](x).shape


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("version", ["v0", "v1"])
def test_dcls_from_conv_equals_the_model_at_init(name, version):
    model_zoo.require("dcls")
    model, x = model_zoo.build(name)
    expected = model(x)
    report = convert(model, "dcls", inplace=False, version=version)
    assert report.num_replaced == model_zoo.DEPTHWISE[name]
    # v1 normalises by (1 + 1e-7): equal up to a relative 1e-7
    tolerance = 1e-10 if version == "v0" else 1e-6
    torch.testing.assert_close(report.model(x), expected, atol=tolerance, rtol=tolerance)


def interior_mask(conv: nn.Module, in_shape) -> torch.Tensor:
    """True at the outputs whose window lies wholly inside the input (no padding involved)."""
    masks = []
    for size, k, s, d, p in zip(in_shape, conv.kernel_size, conv.stride, conv.dilation, conv.padding):
        out = (size + 2 * p - d * (k - 1) - 1) // s + 1
        start = torch.arange(out) * s - p
        masks.append((start >= 0) & (start + d * (k - 1) <= size - 1))
    mask = masks[0]
    for m in masks[1:]:
        mask = mask[..., None] & m
    return mask


@pytest.mark.parametrize("name", ["convnext_stage", "mobilenet_v2_stack"])
def test_diffconv_equals_each_conv_in_the_interior(name):
    model_zoo.require("diffconv")
    model, x = model_zoo.build(name)
    names = [n for n, m in model.named_modules() if is_depthwise(m, n)]
    inputs = capture_inputs(model, names)
    model(x)
    report = convert(model, "diffconv", inplace=False)
    assert [r.fqn for r in report.replaced] == names
    for fqn in names:
        conv, layer = model.get_submodule(fqn), report.model.get_submodule(fqn)
        ref, out = conv(inputs[fqn]), layer(inputs[fqn])
        assert out.shape == ref.shape
        mask = interior_mask(conv, inputs[fqn].shape[2:]).expand_as(ref)
        assert mask.any() and not mask.all()
        torch.testing.assert_close(out[mask], ref[mask], atol=1e-10, rtol=1e-10)


def test_diffconv_with_any_conv_filter_converts_dense_convs_too():
    model_zoo.require("diffconv")
    model, x = model_zoo.build("mobilenet_v2_stack")
    report = convert(model, "diffconv", filter_fn=any_conv_with_kernel_gt1)
    # the 3x3 stem and three depthwise 3x3 convs; the 1x1 convs are pointwise
    assert report.num_replaced == 4
    assert sum("pointwise" in s.reason for s in report.skipped) == 5
    fwd_bwd(model, x)


@pytest.mark.parametrize("name", MODELS)
def test_shift_at_integer_shifts_equals_the_one_hot_conv(name):
    """A shift by an integer s equals the conv whose kernel is one-hot at tap (padding - s) / dilation."""
    model_zoo.require("shift")
    model, x = model_zoo.build(name)
    names = [n for n, m in model.named_modules() if is_depthwise(m, n) and m.out_channels == m.in_channels]
    inputs = capture_inputs(model, names)
    model(x)
    report = convert(model, "shift", inplace=False)
    gen = torch.Generator().manual_seed(1)
    checked = 0
    for fqn in names:
        conv, layer = model.get_submodule(fqn), report.model.get_submodule(fqn)
        if any(s != 1 for s in conv.stride):
            continue
        half = torch.tensor([k // 2 for k in conv.kernel_size])
        dilation = torch.tensor(conv.dilation)
        taps = torch.stack([torch.randint(-int(h), int(h) + 1, (conv.in_channels,), generator=gen) for h in half], 1)
        shifts = taps * dilation
        with torch.no_grad():
            layer.weight.copy_(shifts.to(layer.weight))
        one_hot = nn.Conv1d if len(half) == 1 else nn.Conv2d if len(half) == 2 else nn.Conv3d
        reference = one_hot(conv.in_channels, conv.in_channels, conv.kernel_size, padding=conv.padding,
                            dilation=conv.dilation, groups=conv.groups, bias=False).double()
        with torch.no_grad():
            reference.weight.zero_()
            index = (torch.tensor(conv.padding) - shifts) // dilation
            for c in range(conv.in_channels):
                reference.weight[(c, 0, *index[c].tolist())] = 1.0
        torch.testing.assert_close(layer(inputs[fqn]), reference(inputs[fqn]), atol=1e-12, rtol=0)
        checked += 1
    assert checked >= 1


def test_shift_keeps_the_output_shape_of_strided_convs():
    model_zoo.require("shift")
    model, x = model_zoo.build("mobilenet_v2_stack")
    strided = "features.1.conv.3"
    assert model.get_submodule(strided).stride == (2, 2)
    inputs = capture_inputs(model, [strided])
    model(x)
    report = convert(model, "shift", inplace=False)
    assert report.model.get_submodule(strided)(inputs[strided]).shape == model.get_submodule(strided)(inputs[strided]).shape


def test_already_converted_model_is_a_no_op_with_a_note():
    model_zoo.require("dcls")
    model, x = model_zoo.build("convnext_stage")
    convert(model, "dcls")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    report = convert(model, "dcls")
    assert report.num_replaced == 0
    assert any("already converted to 'dcls'" in n and "2 Dcls2d" in n for n in report.notes)
    assert "already converted" in str(report)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])


def test_dcls_recipe_initialisation_keeps_shapes_and_shares_positions():
    model_zoo.require("dcls")
    from learnable_ops.nn import Dcls2d

    model, x = model_zoo.build("convnext_stage")
    before = model(x)
    report = convert(model, "dcls", kernel_count=5, dilated_kernel_size=11, share_positions="by_channels")
    layers = [m for m in model.modules() if isinstance(m, Dcls2d)]
    assert len(layers) == 2
    assert layers[0].weight.shape == (8, 1, 5) and tuple(layers[0].dilated_kernel_size) == (11, 11)
    assert layers[0].P is layers[1].P
    if getattr(layers[0], "SIG", None) is not None:
        assert layers[0].SIG is layers[1].SIG
    assert any("2 layer(s)" in n for n in report.notes)
    # positions are shared once in the parameter list
    assert sum(p is layers[0].P for p in model.parameters()) == 1
    assert model(x).shape == before.shape
    fwd_bwd(model, x)


def test_dcls_positions_are_shared_by_equal_channel_counts_only():
    model_zoo.require("dcls")
    from learnable_ops.nn import Dcls2d

    model, x = model_zoo.build("mobilenet_v2_stack")
    convert(model, "dcls", kernel_count=3, dilated_kernel_size=5, share_positions="by_channels")
    positions = {id(m.P) for m in model.modules() if isinstance(m, Dcls2d)}
    assert len(positions) == 3  # 8, 24 and 48 channels


def test_dcls_larger_grid_from_conv():
    model_zoo.require("dcls")
    model, x = model_zoo.build("convnext_stage")
    expected = model(x)
    report = convert(model, "dcls", inplace=False, dilated_kernel_size=9, version="v0")
    torch.testing.assert_close(report.model(x), expected, atol=1e-10, rtol=1e-10)


def test_filter_by_name_limits_the_conversion():
    model_zoo.require("dcls")
    model, x = model_zoo.build("convnext_stage")
    report = convert(model, "dcls", filter_fn=is_depthwise & by_name("blocks.1.*"))
    assert [r.fqn for r in report.replaced] == ["blocks.1.conv_dw"]
    assert any(s.fqn == "blocks.0.conv_dw" and "does not match" in s.reason for s in report.skipped)


def test_filter_matching_a_non_conv_is_an_error():
    model_zoo.require("dcls")
    model, _ = model_zoo.build("convnext_stage")
    with pytest.raises(ValueError, match=r"filter_fn selected 'blocks.0.norm' \(LayerNorm\), which is not a Conv1d/Conv2d/Conv3d"):
        convert(model, "dcls", filter_fn=lambda m, n: n.startswith("blocks.0.") and not isinstance(m, nn.Sequential))


def test_dcls_recipe_bad_arguments():
    model_zoo.require("dcls")
    model, _ = model_zoo.build("convnext_stage")
    with pytest.raises(ValueError, match="kernel_count needs dilated_kernel_size"):
        convert(model, "dcls", kernel_count=5)
    with pytest.raises(ValueError, match="cannot keep the output shape"):
        convert(model, "dcls", kernel_count=5, dilated_kernel_size=10)
    assert all(type(m).__name__ != "Dcls2d" for m in model.modules())


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"valid targets are 'dcls', 'shift', 'diffconv' or a callable"):
        convert(nn.Conv2d(2, 2, 3, groups=2), "Dcls")


# ----------------------------------------------------------------------------- timm / torchvision


def _device():
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture
def no_tf32():
    """Full fp32 convolutions on the GPU, so that DCLS-vs-conv differences are rounding only."""
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        yield


@pytest.mark.parametrize("target", ["dcls", "shift", "diffconv"])
def test_timm_convnext_tiny(target, no_tf32):
    timm = pytest.importorskip("timm")
    model_zoo.require(target)
    device = _device()
    model = timm.create_model("convnext_tiny", pretrained=False).to(device).eval()
    x = torch.randn(2, 3, 224, 224, device=device)
    with torch.no_grad():
        expected = model(x)
    report = convert(model, target)
    print(report)
    assert report.num_replaced == 18
    if target == "dcls":  # compared before the train-mode pass, which would move BatchNorm statistics
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, atol=1e-3, rtol=1e-3)
    model.train()
    out = model(x)
    out.float().square().mean().backward()


@pytest.mark.parametrize("target", ["dcls", "shift", "diffconv"])
def test_torchvision_mobilenet_v2(target, no_tf32):
    torchvision = pytest.importorskip("torchvision")
    model_zoo.require(target)
    device = _device()
    model = torchvision.models.mobilenet_v2(weights=None).to(device).eval()
    x = torch.randn(2, 3, 224, 224, device=device)
    with torch.no_grad():
        expected = model(x)
    report = convert(model, target)
    print(report)
    assert report.num_replaced == 17
    if target == "dcls":  # compared before the train-mode pass, which moves BatchNorm's running statistics
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, atol=1e-3, rtol=1e-3)
    model.train()
    model(x).float().square().mean().backward()
