"""The converter's walk, filters, report, state carry-over and bad input, with a callable target."""

import copy
import importlib
import pathlib
import re
import sys
import warnings

import pytest
import torch
from torch import nn

import learnable_ops
from learnable_ops.convert import ConversionReport, any_conv_with_kernel_gt1, by_name, convert, is_depthwise

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import model_zoo  # noqa: E402

# the package attribute learnable_ops.convert is the function; the module is reached by name
convert_module = importlib.import_module("learnable_ops.convert")


class Wrapped(nn.Module):
    """A stand-in replacement: runs a copy of the conv (so outputs must not change)."""

    def __init__(self, conv):
        super().__init__()
        self.inner = copy.deepcopy(conv)
        for hooks in convert_module._HOOK_DICTS:
            getattr(self.inner, hooks).clear()

    def forward(self, x):
        return self.inner(x)


def wrap(module, fqn):
    return Wrapped(module)


class Conv2dSame(nn.Conv2d):
    """Like timm's Conv2dSame: a subclass whose padding semantics differ."""


@pytest.mark.parametrize("name", list(model_zoo.MODELS))
def test_callable_target_replaces_every_depthwise_conv(name):
    model, x = model_zoo.build(name)
    expected = model(x)
    report = convert(model, wrap)
    assert report.model is model
    assert report.num_replaced == model_zoo.DEPTHWISE[name]
    assert all(r.old_type.startswith("Conv") and r.new_type == "Wrapped" for r in report.replaced)
    assert sum(isinstance(m, Wrapped) for m in model.modules()) == model_zoo.DEPTHWISE[name]
    # every conv that is left is listed as skipped, with a reason
    convs_left = [n for n, m in model.named_modules() if type(m) in (nn.Conv1d, nn.Conv2d, nn.Conv3d) and "inner" not in n]
    assert sorted(s.fqn for s in report.skipped) == sorted(convs_left)
    assert all(s.reason.startswith("not depthwise") for s in report.skipped)
    torch.testing.assert_close(model(x), expected, atol=0, rtol=0)
    model(x).sum().backward()


def test_predicates_and_reasons():
    dw = nn.Conv2d(4, 8, 3, groups=4)
    dense = nn.Conv2d(4, 8, 3)
    pointwise = nn.Conv1d(4, 4, 1, groups=4)
    assert is_depthwise(dw) and is_depthwise(pointwise) and not is_depthwise(dense)
    assert not is_depthwise(nn.Conv2d(4, 6, 3, groups=2))
    assert "not depthwise" in is_depthwise.why_not(dense)
    assert "subclasses Conv2d" in is_depthwise.why_not(Conv2dSame(4, 4, 3, groups=4))
    assert "not a Conv1d/Conv2d/Conv3d" in is_depthwise.why_not(nn.ConvTranspose2d(4, 4, 3, groups=4))
    assert any_conv_with_kernel_gt1(dense) and any_conv_with_kernel_gt1(nn.Conv3d(2, 2, (1, 1, 3)))
    assert not any_conv_with_kernel_gt1(pointwise)
    assert "pointwise" in any_conv_with_kernel_gt1.why_not(pointwise)
    glob = by_name("blocks.*.conv_dw")
    assert glob(dw, "blocks.0.conv_dw") and not glob(dw, "blocks.0.conv_pw") and not glob(dw, "x.blocks.0.conv_dw")
    assert not glob(nn.ReLU(), "blocks.0.conv_dw")
    regex = by_name(re.compile(r"conv_dw$"))
    assert regex(dw, "a.b.conv_dw") and not regex(dw, "a.conv_dw.x")
    both = is_depthwise & glob
    assert both(dw, "blocks.1.conv_dw") and not both(dense, "blocks.1.conv_dw") and not both(dw, "stem")
    either = is_depthwise | glob
    assert either(dense, "blocks.1.conv_dw") and either(dw, "stem") and not either(dense, "stem")
    assert "does not match" in either.why_not(dense, "stem")
    with pytest.raises(TypeError, match="pattern"):
        by_name(3)


def test_exact_types_by_default_and_subclass_on_request():
    model = nn.Sequential(Conv2dSame(4, 4, 3, groups=4), nn.Conv2d(4, 4, 3, groups=4))
    report = convert(model, wrap)
    assert [r.fqn for r in report.replaced] == ["1"]
    assert report.skipped[0].fqn == "0" and "subclasses Conv2d" in report.skipped[0].reason
    model = nn.Sequential(Conv2dSame(4, 4, 3, groups=4))
    report = convert(model, wrap, filter_fn=lambda m, n: isinstance(m, nn.Conv2d))
    assert [r.fqn for r in report.replaced] == ["0"]


def test_report_prints_a_table():
    model, _ = model_zoo.build("mobilenet_v2_stack")
    report = convert(model, wrap, filter_fn=is_depthwise & by_name("features.*"))
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "convert(to='wrap'): replaced 3, skipped 6 convolutions"
    header = next(line for line in lines if line.startswith("module"))
    assert header.split() == ["module", "old", "type", "new", "type", "params", "before", "params", "after"]
    assert any(re.match(r"features\.1\.conv\.3\s+Conv2d\s+Wrapped\s+216\s+216$", line) for line in lines)
    assert any(re.match(r"total\s+", line) for line in lines)
    assert "skipped:" in lines
    assert any(re.match(r"stem\.0\s+Conv2d\s+not depthwise", line) for line in lines)
    assert report.parameters_before == report.parameters_after == 8 * 9 + 24 * 9 + 48 * 9
    assert "replaced=3" in repr(report)


def test_keeps_device_dtype_training_mode_requires_grad_and_qconfig():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Sequential(nn.Conv2d(4, 4, 3, groups=4))).double()
    model[0].eval()
    model[1].train()
    model[1][0].weight.requires_grad_(False)
    model[0].qconfig = torch.ao.quantization.default_qconfig
    convert(model, lambda m, n: nn.Conv2d(4, 4, 3, groups=4))  # built in float32, training mode
    assert all(p.dtype == torch.float64 for p in model.parameters())
    assert not model[0].training and model[1][0].training
    assert model[0].weight.requires_grad and model[0].bias.requires_grad
    assert not model[1][0].weight.requires_grad and model[1][0].bias.requires_grad
    assert model[0].qconfig is torch.ao.quantization.default_qconfig
    assert not hasattr(model[1][0], "qconfig")


def test_parameters_new_to_the_replacement_follow_a_frozen_weight():
    class WithPositions(nn.Module):
        def __init__(self, conv):
            super().__init__()
            self.weight = nn.Parameter(conv.weight.detach().clone())
            self.P = nn.Parameter(torch.zeros(3))

    model = nn.Sequential(nn.Conv1d(2, 2, 3, groups=2), nn.Conv1d(2, 2, 3, groups=2))
    model[1].requires_grad_(False)
    convert(model, lambda m, n: WithPositions(m))
    assert model[0].P.requires_grad and not model[1].P.requires_grad and not model[1].weight.requires_grad


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_keeps_cuda_device():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4)).cuda().half()
    convert(model, lambda m, n: nn.Conv2d(4, 4, 3, groups=4))
    assert model[0].weight.device.type == "cuda" and model[0].weight.dtype == torch.float16


def test_keeps_hooks_and_their_handles():
    model = nn.Sequential(nn.Conv1d(2, 2, 3, groups=2))
    calls = []
    pre = model[0].register_forward_pre_hook(lambda m, args: calls.append(("pre", type(m).__name__)))
    post = model[0].register_forward_hook(lambda m, args, kwargs, out: calls.append(("post", type(m).__name__)), with_kwargs=True)
    model[0].register_full_backward_hook(lambda m, gi, go: calls.append(("backward", type(m).__name__)))
    convert(model, wrap)
    x = torch.randn(1, 2, 5, requires_grad=True)
    model(x).sum().backward()
    assert calls == [("pre", "Wrapped"), ("post", "Wrapped"), ("backward", "Wrapped")]
    pre.remove()
    post.remove()
    calls.clear()
    model(x)
    assert calls == []


def test_drops_parameter_bound_hooks_with_a_warning():
    conv = nn.utils.weight_norm(nn.Conv1d(2, 2, 3, groups=2))
    conv._register_state_dict_hook(lambda module, state_dict, prefix, local_metadata: None)
    model = nn.Sequential(conv)
    with pytest.warns(UserWarning) as record:
        report = convert(model, lambda m, n: nn.Conv1d(2, 2, 3, groups=2))
    messages = [str(w.message) for w in record]
    assert any("WeightNorm" in m for m in messages) and any("state dict hook" in m for m in messages)
    assert len(report.notes) == 2
    assert not model[0]._forward_pre_hooks and not model[0]._state_dict_hooks
    model(torch.randn(1, 2, 5))


def test_shared_module_is_replaced_once():
    shared = nn.Conv2d(3, 3, 3, padding=1, groups=3)
    model = nn.Sequential(nn.Sequential(shared), nn.Sequential(shared, nn.ReLU()))
    built = []
    report = convert(model, lambda m, n: built.append(n) or Wrapped(m))
    assert built == ["0.0"]
    assert model[0][0] is model[1][0] and isinstance(model[0][0], Wrapped)
    assert report.num_replaced == 1 and report.replaced[0].also_at == ["1.0"]
    assert "0.0 (also 1.0)" in str(report)


def test_shared_container_is_walked_once():
    block = nn.Sequential(nn.Conv2d(3, 3, 3, groups=3), nn.Conv2d(3, 6, 1))
    model = nn.ModuleDict({"a": block, "b": block})
    report = convert(model, wrap)
    assert report.num_replaced == 1 and len(report.skipped) == 1
    assert isinstance(model["b"][0], Wrapped)


def test_not_inplace_leaves_the_model_alone():
    model, x = model_zoo.build("audio_convnet")
    before = model(x)
    report = convert(model, wrap, inplace=False)
    assert report.model is not model
    assert not any(isinstance(m, Wrapped) for m in model.modules())
    assert report.num_replaced == 3
    torch.testing.assert_close(report.model(x), before, atol=0, rtol=0)


def test_root_conv_is_replaced_and_returned():
    conv = nn.Conv2d(3, 3, 3, groups=3)
    report = convert(conv, wrap)
    assert isinstance(report.model, Wrapped) and report.replaced[0].fqn == "<root>"


def test_callable_may_replace_non_convs_with_a_custom_filter():
    model, x = model_zoo.build("mobilenet_v2_stack")
    report = convert(model, lambda m, n: nn.Hardtanh(0.0, 6.0), filter_fn=lambda m, n: isinstance(m, nn.ReLU6))
    assert report.num_replaced == 6
    assert not any(isinstance(m, nn.ReLU6) for m in model.modules())


def test_callable_returning_the_same_module_is_noted():
    model = nn.Sequential(nn.Conv1d(2, 2, 3, groups=2))
    report = convert(model, lambda m, n: m)
    assert report.num_replaced == 0 and "unchanged" in report.notes[0]


def test_bad_input():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2))
    with pytest.raises(ValueError, match=r"unknown target to='dlcs'; valid targets are 'dcls', 'shift', 'diffconv'"):
        convert(model, "dlcs")
    with pytest.raises(TypeError, match="to must be one of"):
        convert(model, nn.Identity())
    with pytest.raises(TypeError, match="to must be one of"):
        convert(model, 3)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        convert(torch.zeros(3), wrap)
    with pytest.raises(TypeError, match="filter_fn must be a callable"):
        convert(model, wrap, filter_fn="features.*")
    with pytest.raises(TypeError, match="apply to named targets only"):
        convert(model, wrap, version="v1")
    with pytest.raises(ValueError, match="share_positions must be None or 'by_channels'"):
        convert(model, "dcls", share_positions="by_stage")
    with pytest.raises(ValueError, match="share_positions applies to to='dcls' only"):
        convert(model, "shift", share_positions="by_channels")
    with pytest.raises(TypeError, match="not an nn.Module"):
        convert(model, lambda m, n: None)


def test_bad_input_does_not_touch_the_model():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2))
    with pytest.raises(ValueError):
        convert(model, "nope")
    assert type(model[0]) is nn.Conv2d


def test_report_type_and_module_exports():
    assert isinstance(convert(nn.Linear(2, 2), wrap), ConversionReport)
    assert set(convert_module.TARGETS) == {"dcls", "shift", "diffconv"}
    assert learnable_ops.convert is convert and learnable_ops.ConversionReport is ConversionReport


def test_no_warning_for_plain_models():
    model, _ = model_zoo.build("video_block")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert(model, wrap)
