import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from learnable_ops import dcls
from learnable_ops.nn import Dcls1d, Dcls2d


def small_model(version="gauss"):
    a = Dcls2d(4, 4, 3, dilated_kernel_size=7, padding=3, groups=4, version=version)
    b = Dcls2d(4, 4, 3, dilated_kernel_size=7, padding=3, groups=4, version=version)
    c = Dcls2d(4, 4, 3, dilated_kernel_size=(5, 9), padding=(2, 4), version=version)
    dcls.share_positions([a, b])
    return nn.Sequential(a, nn.BatchNorm2d(4), b, nn.GELU(), c, nn.Conv2d(4, 2, 1))


def test_param_groups():
    model = small_model()
    model[5].requires_grad_(False)
    groups = dcls.param_groups(model, lr=1e-3, weight_decay=0.05, position_lr_scale=5.0)
    by_name = {g["name"]: g for g in groups}
    pos = {id(p) for p in by_name["dcls_positions"]["params"]}
    assert pos == {id(model[0].P), id(model[0].SIG), id(model[4].P), id(model[4].SIG)}  # shared ones once
    assert by_name["dcls_positions"]["weight_decay"] == 0.0
    assert by_name["dcls_positions"]["lr"] == pytest.approx(5e-3)
    assert by_name["dcls_positions"]["lr_scale"] == 5.0
    rest = by_name["params"]["params"]
    assert by_name["params"]["weight_decay"] == 0.05 and by_name["params"]["lr"] == 1e-3
    assert all(id(p) not in pos for p in rest)
    assert id(model[5].weight) not in {id(p) for p in rest}  # frozen parameters are left out
    expected = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in groups for p in g["params"]} == expected
    opt = torch.optim.AdamW(groups)
    # Weight decay must not move positions: with zero gradients only decayed parameters change.
    before = model[0].P.detach().clone(), model[0].weight.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert torch.equal(model[0].P, before[0]) and not torch.equal(model[0].weight, before[1])
    assert dcls.param_groups(nn.Linear(2, 2), 0.1, 0.0)[0]["name"] == "params"  # empty groups dropped


def test_clamp_positions_and_step_hook():
    model = small_model("v1")
    with torch.no_grad():
        for layer in dcls.dcls_layers(model):
            layer.P.mul_(40)
    dcls.clamp_positions(model)
    for layer in dcls.dcls_layers(model):
        for a, h in enumerate(layer.position_bounds):
            assert layer.P[a].abs().max() <= h
            assert layer.P[a].abs().max() == h  # some were pushed onto the bound
    opt = torch.optim.SGD(model.parameters(), lr=100.0)
    handle = dcls.clamp_positions_after_step(opt, model)
    x = torch.randn(2, 4, 9, 9)
    model(x).square().sum().backward()
    opt.step()
    c = model[4]
    assert c.P[0].abs().max() <= 2 and c.P[1].abs().max() <= 4
    handle.remove()
    opt.zero_grad()
    model(x).square().sum().backward()
    opt.step()
    assert any(layer.P.abs().max() > 4 for layer in dcls.dcls_layers(model))  # hook gone
    with pytest.raises(TypeError, match="optimizer"):
        dcls.clamp_positions_after_step(model, model)


def test_share_positions():
    a, b = Dcls1d(3, 5, 2, dilated_kernel_size=9, version="gauss"), Dcls1d(3, 5, 2, dilated_kernel_size=9)
    P = dcls.share_positions([a, b], across_outputs=True)
    assert a.P is b.P is P and a.SIG is b.SIG and P.shape == (1, 1, 3, 2)
    x = torch.randn(1, 3, 10)
    assert a(x).shape == (1, 5, 2)
    with pytest.raises(ValueError, match="position shapes"):
        dcls.share_positions([a, Dcls1d(3, 5, 3, dilated_kernel_size=9)])
    with pytest.raises(ValueError, match="SIG"):
        dcls.share_positions([Dcls1d(3, 5, 2, version="v1"), Dcls1d(3, 5, 2, version="gauss")])


@pytest.mark.parametrize("kind", ["geometric", "linear", "cosine"])
def test_sigma_schedule(kind):
    model = small_model("gauss")
    schedule = dcls.SigmaSchedule(model, total_steps=20, start=6.0, floor=0.23, fraction=0.25, kind=kind)
    sigmas = dcls.position_parameters(model)[1::2]
    assert all(not s.requires_grad and torch.all(s == 6.0) for s in sigmas)
    values = [schedule.step() for _ in range(20)]
    assert values[4] == pytest.approx(0.23) and values[-1] == pytest.approx(0.23)
    assert all(a >= b for a, b in zip(values, values[1:]))
    if kind == "geometric":
        ratio = (0.23 / 6.0) ** (1 / 5)
        assert values[0] == pytest.approx(6.0 * ratio) and values[1] == pytest.approx(6.0 * ratio**2)
    if kind == "linear":
        assert values[1] == pytest.approx(6.0 + (0.23 - 6.0) * 2 / 5)
    assert torch.all(model[4].SIG == torch.tensor(values[-1]))
    restored = dcls.SigmaSchedule(small_model("gauss"), total_steps=20, start=6.0, kind=kind)
    restored.load_state_dict({"last_step": 2})
    assert float(restored.sigmas[0][0, 0, 0, 0]) == pytest.approx(values[1], rel=1e-6)
    with pytest.raises(ValueError, match="SIG"):
        dcls.SigmaSchedule(small_model("v1"), total_steps=10, start=1.0)
    with pytest.raises(ValueError, match="kind"):
        dcls.SigmaSchedule(model, total_steps=10, start=1.0, kind="step")


def test_rounded_positions_give_integer_delays():
    layer = Dcls1d(2, 3, 2, dilated_kernel_size=9, padding=4, version="gauss", bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.P.uniform_(-5.5, 5.5)
        layer.SIG.fill_(2.0)
    P0, SIG0 = layer.P.detach().clone(), layer.SIG.detach().clone()
    x = torch.randn(1, 2, 15, dtype=torch.float64)
    before = layer(x)
    with dcls.rounded_positions(layer):
        assert layer.version == "v1"
        delays = layer.P.round().clamp(-4, 4)
        assert torch.equal(layer.P, delays)
        # Each tap is a pure shift by its integer delay: a one-hot kernel.
        expected = torch.zeros(3, 2, 9, dtype=torch.float64)
        for o in range(3):
            for i in range(2):
                for k in range(2):
                    expected[o, i, int(delays[0, o, i, k]) + 4] += layer.weight[o, i, k]
        torch.testing.assert_close(layer.construct_kernel(), expected, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(layer(x), F.conv1d(x, expected, padding=4), atol=1e-6, rtol=1e-6)
    assert layer.version == "gauss" and torch.equal(layer.P, P0) and torch.equal(layer.SIG, SIG0)
    torch.testing.assert_close(layer(x), before)
    dcls.round_positions(layer, version="max")
    assert layer.version == "max" and torch.all(layer.SIG == 0) and torch.equal(layer.P, P0.round().clamp(-4, 4))
    with pytest.raises(ValueError, match="version"):
        dcls.round_positions(layer, version="nearest")


def test_snn_delay_recipe_runs():
    """SNN-delays: Dcls1d with one tap per synapse, positions at 100x lr, frozen decaying SIG."""
    max_delay = 9
    layer = Dcls1d(4, 3, kernel_count=1, dilated_kernel_size=max_delay, version="gauss", bias=False)
    with torch.no_grad():
        layer.P.uniform_(-(max_delay // 2), max_delay // 2)
    opt = torch.optim.Adam(dcls.param_groups(layer, lr=1e-3, weight_decay=1e-5, position_lr_scale=100.0))
    dcls.clamp_positions_after_step(opt, layer)
    schedule = dcls.SigmaSchedule(layer, total_steps=8, start=max_delay // 2)
    x = torch.randn(2, 4, 20)
    for _ in range(8):
        loss = layer(F.pad(x, (max_delay - 1, 0))).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    assert layer.P.abs().max() <= max_delay // 2 and math.isclose(float(layer.SIG[0, 0, 0, 0]), 0.23, rel_tol=1e-6)
    with dcls.rounded_positions(layer):
        assert layer(x).shape == (2, 3, 12)
