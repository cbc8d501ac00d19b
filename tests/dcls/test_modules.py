import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import learnable_ops as lo
from learnable_ops import testing
from learnable_ops.nn import Dcls1d, Dcls2_1d, Dcls2d, Dcls2dK1d, Dcls3_1d, Dcls3d
from module_reference import reference_forward, reference_kernel

VERSIONS = lo.DCLS_VERSIONS


# (class, constructor kwargs, input shape): groups, depthwise, non-square and even D, stride, padding.
CASES = {
    "1d": (Dcls1d, dict(in_channels=4, out_channels=6, kernel_count=3, dilated_kernel_size=7, padding=2, groups=2),
           (2, 4, 11)),
    "1d-even-stride": (Dcls1d, dict(in_channels=3, out_channels=2, kernel_count=2, dilated_kernel_size=6, stride=2),
                       (1, 3, 13)),
    "2d-nonsquare": (Dcls2d, dict(in_channels=3, out_channels=4, kernel_count=3, dilated_kernel_size=(3, 6),
                                  padding=(1, 2)), (2, 3, 6, 9)),
    "2d-depthwise-even": (Dcls2d, dict(in_channels=4, out_channels=4, kernel_count=2, dilated_kernel_size=(4, 5),
                                       groups=4, padding="same"), (1, 4, 7, 6)),
    "2d-groups-stride": (Dcls2d, dict(in_channels=4, out_channels=6, kernel_count=2, dilated_kernel_size=5,
                                      groups=2, stride=(2, 1), padding=1), (1, 4, 8, 7)),
    "3d-nonsquare": (Dcls3d, dict(in_channels=2, out_channels=3, kernel_count=2, dilated_kernel_size=(2, 3, 4),
                                  padding=(1, 0, 2)), (1, 2, 4, 5, 6)),
    "2_1d": (Dcls2_1d, dict(in_channels=2, out_channels=3, kernel_count=2, dense_kernel_size=3,
                            dilated_kernel_size=6, padding=(1, 2)), (2, 2, 5, 9)),
    "3_1d": (Dcls3_1d, dict(in_channels=2, out_channels=2, kernel_count=2, dense_kernel_size=(2, 3),
                            dilated_kernel_size=5, groups=2, padding=(0, 1, 2)), (1, 2, 3, 4, 8)),
    "2dK1d-0": (Dcls2dK1d, dict(in_channels=2, out_channels=3, kernel_count=3, dilated_kernel_size=7, flat_dim=0,
                                padding=(3, 0)), (1, 2, 9, 5)),
    "2dK1d-1": (Dcls2dK1d, dict(in_channels=2, out_channels=2, kernel_count=2, dilated_kernel_size=4, flat_dim=1,
                                groups=2), (1, 2, 3, 8)),
}


def randomise(layer, seed=0, spread=1.3):
    """Non-lattice positions, some beyond the clamp range, and non-trivial SIG."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for a, h in enumerate(layer.position_bounds):
            layer.P[a].copy_((torch.rand(layer.P[a].shape, generator=gen, dtype=torch.float64) * 2 - 1) * h * spread
                             + 0.123)
        if layer.SIG is not None:
            layer.SIG.copy_(torch.rand(layer.SIG.shape, generator=gen, dtype=torch.float64) * 1.2 - 0.4)
        if layer.bias is not None:
            layer.bias.normal_(generator=gen)
    return layer


def make(name, version, dtype=torch.float64, **overrides):
    cls, kwargs, shape = CASES[name]
    layer = cls(**{**kwargs, **overrides}, version=version, dtype=dtype)
    return randomise(layer), torch.randn(shape, dtype=dtype)


def grads(layer, x, fn):
    params = [p for p in (layer.weight, layer.P, layer.SIG, layer.bias) if p is not None]
    out = fn(x)
    proj = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1)).to(out.device)
    return out.detach(), torch.autograd.grad((out * proj).sum(), params)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", list(CASES))
def test_matches_float64_reference(name, version):
    layer, x = make(name, version)
    out, g = grads(layer, x, layer)
    ref, rg = grads(layer, x, lambda x: reference_forward(layer, x))
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    for a, b in zip(g, rg):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(layer.construct_kernel(), reference_kernel(layer), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular", "symmetric", "border", "periodic"])
def test_padding_modes(mode):
    layer, x = make("2d-nonsquare", "gauss", padding_mode=mode, padding=(2, 3))
    x.requires_grad_(True)
    out = layer(x)
    torch.testing.assert_close(out, reference_forward(layer, x.detach()), atol=1e-10, rtol=1e-10)
    # The input gradient of a padded conv is the adjoint of the padding: compare with F.pad where torch has the mode.
    if mode in ("reflect", "replicate", "circular"):
        xr = x.detach().clone().requires_grad_(True)
        ref = F.conv2d(F.pad(xr, (3, 3, 2, 2), mode=mode), layer.construct_kernel(), layer.bias)
        g = torch.randn(out.shape, dtype=out.dtype)
        torch.testing.assert_close(torch.autograd.grad(out, x, g)[0], torch.autograd.grad(ref, xr, g)[0])


@pytest.mark.parametrize("name", ["1d", "2d-nonsquare", "3d-nonsquare", "2_1d"])
def test_padding_same_and_valid(name):
    layer, x = make(name, "v1", padding="same")
    assert layer(x).shape[2:] == x.shape[2:]
    torch.testing.assert_close(layer(x), reference_forward(layer, x))
    layer.padding = "valid"
    torch.testing.assert_close(layer(x), reference_forward(layer, x))


@pytest.mark.parametrize("version", VERSIONS)
def test_axis_convention_nonsquare(version):
    # One tap, P = (+1 row, -3 cols) on a 3 x 9 grid: the whole weight lands on cell (1 + 1, 4 - 3).
    layer = Dcls2d(1, 1, 1, dilated_kernel_size=(3, 9), version=version, bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.fill_(2.0)
        layer.P.copy_(torch.tensor([1.0, -3.0]).view(2, 1, 1, 1))
        if layer.SIG is not None:
            layer.SIG.zero_()
    kernel = layer.construct_kernel()[0, 0]
    assert kernel.shape == (3, 9)
    assert kernel.argmax() == 2 * 9 + 1
    if version != "gauss":
        expected = torch.zeros(3, 9, dtype=torch.float64)
        expected[2, 1] = 2.0
        torch.testing.assert_close(kernel, expected, atol=1e-6, rtol=0)
    # 3-D: P[a] moves the tap along axis a only.
    layer3 = Dcls3d(1, 1, 1, dilated_kernel_size=(3, 5, 7), version=version, bias=False, dtype=torch.float64)
    with torch.no_grad():
        layer3.P.copy_(torch.tensor([-1.0, 2.0, 3.0]).view(3, 1, 1, 1))
        if layer3.SIG is not None:
            layer3.SIG.zero_()
    k3 = layer3.construct_kernel()[0, 0]
    assert tuple(int(i) for i in torch.unravel_index(k3.argmax(), k3.shape)) == (0, 4, 6)


def test_dcls2dk1d_kernel_axis():
    x = torch.randn(1, 2, 9, 11, dtype=torch.float64)
    vertical = Dcls2dK1d(2, 3, 2, dilated_kernel_size=5, flat_dim=0, padding=(2, 0), dtype=torch.float64)
    assert vertical.kernel_size == (5, 1) and vertical.construct_kernel().shape == (3, 2, 5, 1)
    assert vertical(x).shape == (1, 3, 9, 11)
    horizontal = Dcls2dK1d(2, 3, 2, dilated_kernel_size=5, flat_dim=1, padding=(0, 2), dtype=torch.float64)
    assert horizontal.construct_kernel().shape == (3, 2, 1, 5)
    assert horizontal(x).shape == (1, 3, 9, 11)


def test_mixed_variant_positions_along_last_axis():
    layer = Dcls3_1d(1, 1, 1, dense_kernel_size=(2, 2), dilated_kernel_size=5, version="v1", bias=False,
                     dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 5.0).view(1, 1, 2, 2, 1))
        layer.P.copy_(torch.tensor([-2.0, -1.0, 1.0, 2.0]).view(1, 1, 1, 2, 2, 1))
    kernel = layer.construct_kernel()[0, 0]
    expected = torch.zeros(2, 2, 5, dtype=torch.float64)
    for (i, j), w, c in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [1, 2, 3, 4], [0, 1, 3, 4]):
        expected[i, j, c] = w
    torch.testing.assert_close(kernel, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("version", ["v1", "gauss"])
def test_positions_broadcast_over_outputs(version):
    layer, x = make("2d-groups-stride", version)
    shared = Dcls2d(**CASES["2d-groups-stride"][1], version=version, dtype=torch.float64)
    shared.load_state_dict(layer.state_dict(), strict=False)
    shared.P = nn.Parameter(layer.P.detach()[:, :1].clone())
    if version == "gauss":
        shared.SIG = nn.Parameter(layer.SIG.detach()[:, :1].clone())
    with torch.no_grad():
        layer.P.copy_(shared.P.expand_as(layer.P))
        if version == "gauss":
            layer.SIG.copy_(shared.SIG.expand_as(layer.SIG))
    assert shared.P.shape == (2, 1, 2, 2)
    assert "shared across output channels" in repr(shared)
    torch.testing.assert_close(shared(x), layer(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(shared(x), reference_forward(shared, x), atol=1e-12, rtol=0)
    proj = torch.randn(shared(x).shape, dtype=torch.float64)
    (g_shared,) = torch.autograd.grad((shared(x) * proj).sum(), shared.P)
    (g_full,) = torch.autograd.grad((layer(x) * proj).sum(), layer.P)
    torch.testing.assert_close(g_shared, g_full.sum(1, keepdim=True))
    sd = shared.state_dict()
    assert sd["P"].shape == (2, 1, 2, 2)
    fresh = Dcls2d(**CASES["2d-groups-stride"][1], version=version, dtype=torch.float64)
    fresh.P = nn.Parameter(torch.zeros(2, 1, 2, 2, dtype=torch.float64))
    if version == "gauss":
        fresh.SIG = nn.Parameter(torch.zeros(2, 1, 2, 2, dtype=torch.float64))
    fresh.load_state_dict(sd)
    torch.testing.assert_close(fresh(x), shared(x))


def test_position_parameter_shared_by_layers():
    a = Dcls2d(3, 3, 4, dilated_kernel_size=7, padding=3, groups=3, version="gauss", dtype=torch.float64)
    b = Dcls2d(3, 3, 4, dilated_kernel_size=7, padding=3, groups=3, version="gauss", dtype=torch.float64)
    b.P, b.SIG = a.P, a.SIG
    model = nn.Sequential(a, nn.GELU(), b)
    names = [n for n, _ in model.named_parameters()]
    assert names.count("0.P") == 1 and "2.P" not in names  # counted (decayed, stepped) once
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    out = model(x)
    (gP,) = torch.autograd.grad(out.sum(), a.P)
    ref = reference_forward(b, F.gelu(reference_forward(a, x)))
    torch.testing.assert_close(out, ref)
    pr = a.P.detach().clone().requires_grad_(True)
    a2 = Dcls2d(3, 3, 4, dilated_kernel_size=7, padding=3, groups=3, version="gauss", dtype=torch.float64)
    b2 = Dcls2d(3, 3, 4, dilated_kernel_size=7, padding=3, groups=3, version="gauss", dtype=torch.float64)
    a2.load_state_dict(a.state_dict())
    b2.load_state_dict(b.state_dict())
    del a2.P, b2.P
    a2.P = b2.P = pr
    (gr,) = torch.autograd.grad(b2(F.gelu(a2(x))).sum(), pr)
    torch.testing.assert_close(gP, gr)  # gradients from both layers accumulate
    state = model.state_dict()
    assert torch.equal(state["0.P"], state["2.P"])


@pytest.mark.parametrize("version", ["v0", "gauss"])
def test_gradcheck_layer(version):
    layer = randomise(Dcls2d(2, 2, 2, dilated_kernel_size=(3, 4), padding=(1, 0), padding_mode="reflect",
                             version=version, dtype=torch.float64))
    x = torch.randn(1, 2, 4, 5, dtype=torch.float64)
    names = ("weight", "P", "SIG", "bias") if version == "gauss" else ("weight", "P", "bias")
    params = [getattr(layer, n).detach().clone().requires_grad_(True) for n in names]

    def fn(x, *tensors):
        return torch.func.functional_call(layer, dict(zip(names, tensors)), (x,))

    testing.check_gradcheck(fn, [x.requires_grad_(True)] + params, fast_mode=True)


# ----------------------------------------------------------------------------- from_conv / to_conv

FROM_CONV = [
    (nn.Conv1d, dict(in_channels=4, out_channels=3, kernel_size=3, dilation=4, padding=2), None, (2, 4, 17)),
    (nn.Conv1d, dict(in_channels=2, out_channels=2, kernel_size=2, stride=2), None, (1, 2, 9)),
    (nn.Conv1d, dict(in_channels=2, out_channels=2, kernel_size=4, padding="same"), 8, (1, 2, 9)),
    (nn.Conv2d, dict(in_channels=4, out_channels=6, kernel_size=3, dilation=(4, 2), groups=2, padding=(3, 1)),
     (11, 7), (2, 4, 12, 10)),
    (nn.Conv2d, dict(in_channels=3, out_channels=3, kernel_size=(2, 4), groups=3, padding_mode="reflect",
                     padding=1), None, (1, 3, 6, 7)),
    (nn.Conv2d, dict(in_channels=2, out_channels=4, kernel_size=3, padding="valid", stride=(1, 2)), 5,
     (1, 2, 8, 9)),
    (nn.Conv3d, dict(in_channels=2, out_channels=2, kernel_size=(2, 3, 2), dilation=(1, 2, 3), padding=1,
                     padding_mode="circular"), None, (1, 2, 5, 7, 6)),
]
DCLS_FOR = {nn.Conv1d: Dcls1d, nn.Conv2d: Dcls2d, nn.Conv3d: Dcls3d}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("version", ["v0", "v1", "max"])
@pytest.mark.parametrize("case", range(len(FROM_CONV)))
def test_from_conv_equals_conv(case, version, dtype):
    conv_cls, kwargs, size, shape = FROM_CONV[case]
    conv = conv_cls(**kwargs, dtype=dtype)
    x = torch.randn(shape, dtype=dtype)
    layer = DCLS_FOR[conv_cls].from_conv(conv, dilated_kernel_size=size, version=version)
    assert layer.kernel_count == math.prod(conv.kernel_size)
    assert torch.equal(layer.weight, conv.weight.reshape(layer.weight.shape))
    assert torch.equal(layer.P, layer.P.round())
    bounds = torch.tensor(layer.position_bounds, dtype=dtype).view(-1, *[1] * (layer.P.dim() - 1))
    assert (layer.P.abs() <= bounds).all()  # taps on the edge of even grids stay in the clamp range
    # Error bound relative to sum |w| |x| (cancellation makes a plain rtol meaningless); v1/max
    # divide every tap by (1 + 1e-7), so they are equal up to that relative error.
    eps = (1e-14 if dtype == torch.float64 else 1e-6) + (0 if version == "v0" else 1.2e-7)
    magnitude = conv._conv_forward(x.abs(), conv.weight.abs(), None)
    if conv.bias is not None:
        magnitude = magnitude + conv.bias.abs().view(-1, *[1] * (x.dim() - 2))
    assert ((layer(x) - conv(x)).abs() <= eps * magnitude + 1e-30).all()


def test_from_conv_taps_keep_learning():
    # from_conv puts taps on integer positions, where 0.1.x's v1 gradient vanished; the op's
    # one-sided derivative keeps them learning.
    conv = nn.Conv2d(2, 2, 3, dilation=2, padding=3)
    layer = Dcls2d.from_conv(conv, dilated_kernel_size=7, version="v1")
    layer(torch.randn(1, 2, 8, 8)).square().sum().backward()
    assert (layer.P.grad != 0).float().mean() > 0.5


@pytest.mark.parametrize("method", ["auto", "construct", "dense", "sparse"])
def test_methods_route_to_construct(method):
    # Until the fast depthwise and sparse paths are integrated every method runs construct + F.conv.
    layer, x = make("2d-depthwise-even", "gauss", method=method)
    assert layer.method == method
    torch.testing.assert_close(layer(x), reference_forward(layer, x), atol=1e-12, rtol=1e-12)


def test_from_conv_gauss_and_errors():
    conv = nn.Conv2d(2, 2, 3, dilation=2, padding=2)
    layer = Dcls2d.from_conv(conv, version="gauss")
    assert layer.SIG is not None and layer.dilated_kernel_size == (5, 5)
    x = torch.randn(1, 2, 9, 9)
    assert layer(x).shape == conv(x).shape
    with pytest.raises(ValueError, match="dilated_kernel_size"):
        Dcls2d.from_conv(conv, dilated_kernel_size=6)
    with pytest.raises(ValueError, match="dilated_kernel_size"):
        Dcls2d.from_conv(conv, dilated_kernel_size=3)
    with pytest.raises(TypeError, match="conv"):
        Dcls2d.from_conv(nn.Conv1d(2, 2, 3))
    with pytest.raises(ValueError, match="version"):
        Dcls2d.from_conv(conv, version="bilinear")


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular", "border", "periodic"])
@pytest.mark.parametrize("name", ["1d", "2d-nonsquare", "2d-depthwise-even", "3d-nonsquare", "2_1d", "3_1d",
                                  "2dK1d-0"])
def test_to_conv_equivalent(name, mode):
    layer, x = make(name, "gauss", padding_mode=mode)
    conv = layer.to_conv()
    assert type(conv) is {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[x.dim() - 2]
    assert conv.kernel_size == layer.kernel_size and conv.dilation == (1,) * (x.dim() - 2)
    torch.testing.assert_close(conv(x), layer(x), atol=1e-12, rtol=1e-12)


def test_to_conv_rejects_symmetric():
    layer, _ = make("2d-nonsquare", "v1", padding_mode="symmetric")
    with pytest.raises(ValueError, match="padding_mode"):
        layer.to_conv()


# ----------------------------------------------------------------------------- cache, moves, state_dict

class CountingConstruct:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


@pytest.fixture
def counting(monkeypatch):
    counter = CountingConstruct(lo.dcls_construct)
    monkeypatch.setattr(lo, "dcls_construct", counter)
    return counter


def test_eval_cache_invalidated_by_optimizer_step(counting):
    layer, x = make("2d-depthwise-even", "gauss")
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    layer.eval()
    with torch.no_grad():
        first = layer(x)
        again = layer(x)
    assert counting.calls == 1 and torch.equal(first, again)
    # A training step in eval mode (grad enabled: no cache), then the cache must not be reused.
    layer(x).square().sum().backward()
    assert counting.calls == 2
    opt.step()
    with torch.no_grad():
        after = layer(x)
    assert counting.calls == 3
    assert not torch.allclose(after, first)
    torch.testing.assert_close(after, reference_forward(layer, x))
    with torch.no_grad():
        layer(x)
    assert counting.calls == 3


def test_eval_cache_invalidations(counting):
    layer, x = make("1d", "v1")
    layer.eval()
    with torch.no_grad():
        layer(x)
        assert counting.calls == 1
        layer.clamp_parameters()  # in place under no_grad: version counter moves
        layer(x)
        assert counting.calls == 2
        layer.load_state_dict(randomise(Dcls1d(**CASES["1d"][1], version="v1", dtype=torch.float64), 5).state_dict())
        torch.testing.assert_close(layer(x), reference_forward(layer, x))
        assert counting.calls == 3
        layer.version = "v0"
        torch.testing.assert_close(layer(x), reference_forward(layer, x))
        assert counting.calls == 4
        layer.P = nn.Parameter(layer.P.detach() + 0.5)
        torch.testing.assert_close(layer(x), reference_forward(layer, x))
        assert counting.calls == 5
        layer.P.data.add_(0.25)  # invisible to version counters: documented, hence invalidate_kernel_cache
        layer.invalidate_kernel_cache()
        torch.testing.assert_close(layer(x), reference_forward(layer, x))
        layer.train()
        layer(x)
        layer(x)
    assert counting.calls == 8
    assert layer._kernel_cache is None


def test_eval_with_grad_still_differentiable(counting):
    layer, x = make("1d", "gauss")
    layer.eval()
    for _ in range(2):
        out = layer(x)
        (g,) = torch.autograd.grad(out.sum(), layer.P)
        assert g.abs().sum() > 0
    assert counting.calls == 2
    layer.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    for _ in range(2):
        (gx,) = torch.autograd.grad(layer(xg).sum(), xg)  # frozen layer: kernel cached, input grads fine
    assert counting.calls == 3
    with torch.inference_mode():
        layer(x)
    (gx2,) = torch.autograd.grad(layer(xg).sum(), xg)  # inference-mode kernels are not reused outside it
    torch.testing.assert_close(gx, gx2)


def test_dtype_move_after_forward():
    layer, x = make("2d-nonsquare", "gauss")
    layer.eval()
    with torch.no_grad():
        ref = layer(x)
        layer.float()
        out = layer(x.float())
        assert out.dtype == torch.float32 and layer._kernel_cache[2].dtype == torch.float32
        torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-5)
        layer.double()  # rounded to float32 and back: compare with the reference of the new values
        torch.testing.assert_close(layer(x), reference_forward(layer, x), atol=1e-12, rtol=1e-12)
        assert layer._kernel_cache[2].dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["2d-nonsquare", "1d", "2_1d"])
def test_half_precision_constructs_in_float32(name, dtype):
    layer, x = make(name, "gauss", dtype=torch.float32)
    ref = layer(x)
    layer.to(dtype)
    out = layer(x.to(dtype))
    assert out.dtype == dtype
    # The kernel is the float32 construction of the (rounded) parameters, rounded once at the end.
    wide = copy.deepcopy(layer).float()
    torch.testing.assert_close(layer.construct_kernel().float(), wide.construct_kernel().to(dtype).float(),
                               atol=0, rtol=0)
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)


def test_autocast():
    layer, x = make("2d-nonsquare", "v1", dtype=torch.float32)
    ref = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
        assert layer.construct_kernel().dtype == torch.float32
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("version", VERSIONS)
def test_state_dict_round_trip(version):
    layer, x = make("3_1d", version)
    keys = {"weight", "P", "bias"} | ({"SIG"} if version in ("gauss", "max") else set())
    layer.eval()
    with torch.no_grad():
        layer(x)  # populate the cache: it must not leak into state_dict
    assert set(layer.state_dict()) == keys
    fresh = Dcls3_1d(**CASES["3_1d"][1], version=version, dtype=torch.float64)
    fresh.load_state_dict(layer.state_dict())
    torch.testing.assert_close(fresh(x), layer(x), atol=0, rtol=0)
    nobias = Dcls1d(2, 2, 2, bias=False, version=version)
    assert "bias" not in nobias.state_dict()


def test_deepcopy_and_pickle_drop_cache(tmp_path):
    layer, x = make("1d", "v1")
    layer.eval()
    with torch.no_grad():
        layer(x)
    clone = copy.deepcopy(layer)
    assert clone._kernel_cache is None
    torch.save(layer, tmp_path / "layer.pt")
    loaded = torch.load(tmp_path / "layer.pt", weights_only=False)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), layer(x))
        torch.testing.assert_close(clone(x), layer(x))


def test_input_layouts():
    layer, x = make("2d-depthwise-even", "gauss")
    ref = layer(x)
    torch.testing.assert_close(layer(x[0]), ref[0])  # unbatched
    assert layer(x[:0]).shape == (0,) + ref.shape[1:]  # empty batch
    torch.testing.assert_close(layer(x.contiguous(memory_format=torch.channels_last)), ref)
    wide = torch.randn(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
    wide[..., ::2] = x
    torch.testing.assert_close(layer(wide[..., ::2]), ref)  # non-contiguous


def test_init_matches_dcls():
    layer = Dcls2d(8, 16, 5, dilated_kernel_size=(3, 9), groups=2, version="gauss")
    bound = 1 / math.sqrt(4 * 5)
    assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    assert layer.weight.abs().max() > 0.8 * bound
    assert layer.P[0].abs().max() <= 1 and layer.P[1].abs().max() <= 4
    assert float(layer.P[1].detach().std()) == pytest.approx(0.5, rel=0.15)  # N(0, 0.5^2), clamped
    assert torch.all(layer.SIG == 0.23)
    assert torch.all(Dcls1d(2, 2, 3, version="max").SIG == 0)
    assert Dcls1d(2, 2, 3, version="v1").SIG is None and Dcls1d(2, 2, 3, version="v0").SIG is None
    mixed = Dcls2_1d(4, 4, 6, dense_kernel_size=3, dilated_kernel_size=11)
    assert mixed.P.shape == (1, 4, 4, 3, 6) and mixed.weight.shape == (4, 4, 3, 6)
    assert mixed.P.abs().max() <= 5 and mixed.P.std() > 2  # U(-5, 5)
    assert mixed.weight.abs().max() <= 1 / math.sqrt(4 * 3 * 6)
    layer3 = Dcls3d(2, 4, 3, dilated_kernel_size=5, version="v0")
    assert layer3.P.shape == (3, 4, 2, 3) and layer3.weight.shape == (4, 2, 3) and layer3.bias.shape == (4,)
    assert "kernel_count=5" in repr(layer) and "version='gauss'" in repr(layer)


# ----------------------------------------------------------------------------- compile / export

@pytest.mark.parametrize("name", ["2d-nonsquare", "1d"])
def test_compile_fullgraph(name):
    layer, x = make(name, "gauss", padding_mode="reflect" if name == "1d" else "zeros", padding="same")
    testing.check_compile(layer, [x])
    layer.eval()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), layer(x))
        with torch.no_grad():
            layer.P.add_(0.3)  # the compiled graph never reads the eager cache
        torch.testing.assert_close(compiled(x), reference_forward(layer, x))
    torch._dynamo.reset()


@pytest.mark.parametrize("train", [True, False])
def test_export(train):
    layer, x = make("2d-depthwise-even", "v1")
    layer.train(train)
    with torch.no_grad():
        layer(x)  # in eval mode this fills the cache, which export must not bake in
    exported = torch.export.export(layer, (x,))
    module = exported.module()
    torch.testing.assert_close(module(x), layer(x))
    other = randomise(Dcls2d(**CASES["2d-depthwise-even"][1], version="v1", dtype=torch.float64), seed=7)
    module.load_state_dict(other.state_dict())
    torch.testing.assert_close(module(x), other(x))


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(kernel_count=0), ValueError, "kernel_count"),
        (dict(kernel_count=2.5), TypeError, "kernel_count"),
        (dict(dilated_kernel_size=0), ValueError, "dilated_kernel_size"),
        (dict(dilated_kernel_size=(3, 0)), ValueError, "dilated_kernel_size"),
        (dict(dilated_kernel_size=(3, 3, 3)), ValueError, "dilated_kernel_size"),
        (dict(version="v2"), ValueError, "v0, v1, max, gauss"),
        (dict(padding_mode="mirror"), ValueError, "padding_mode"),
        (dict(method="fast"), ValueError, "method"),
        (dict(groups=3), ValueError, "groups"),
        (dict(stride=0), ValueError, "stride"),
        (dict(padding=-1), ValueError, "padding"),
        (dict(padding="full"), ValueError, "padding"),
        (dict(padding="same", stride=2), ValueError, "padding='same'"),
        (dict(in_channels=0), ValueError, "in_channels"),
    ],
)
def test_bad_constructor_arguments(kwargs, error, match):
    args = dict(in_channels=4, out_channels=4, kernel_count=2, dilated_kernel_size=3)
    with pytest.raises(error, match=match):
        Dcls2d(**{**args, **kwargs})


def test_bad_mixed_arguments():
    with pytest.raises(ValueError, match="dense_kernel_size"):
        Dcls3_1d(2, 2, 2, dense_kernel_size=(3, 0), dilated_kernel_size=5)
    with pytest.raises(ValueError, match="flat_dim"):
        Dcls2dK1d(2, 2, 2, dilated_kernel_size=5, flat_dim=2)
    with pytest.raises(ValueError, match="kernel_count"):
        Dcls2_1d(2, 2, 0, dilated_kernel_size=5)


def test_wrong_position_shapes():
    layer, x = make("2d-nonsquare", "gauss")
    layer.P = nn.Parameter(torch.zeros(2, 4, 3, 2, dtype=torch.float64))  # Kc 2 instead of 3
    with pytest.raises(ValueError, match=r"P must have shape \(2, 4, 3, 3\)"):
        layer(x)
    layer.P = nn.Parameter(torch.zeros(2, 1, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="SIG must have the shape of P"):
        layer(x)
    v1 = Dcls1d(2, 2, 2, version="v1")
    v1.version = "gauss"
    with pytest.raises(ValueError, match="needs SIG"):
        v1(torch.randn(1, 2, 5))
    v1.version = "bilinear"
    with pytest.raises(ValueError, match="v0, v1, max, gauss"):
        v1(torch.randn(1, 2, 5))


def test_bad_input():
    layer, x = make("2d-nonsquare", "v1")
    with pytest.raises(ValueError, match="in_channels=3"):
        layer(torch.randn(1, 5, 6, 9, dtype=torch.float64))
    with pytest.raises(ValueError, match="input must be"):
        layer(torch.randn(6, 9, dtype=torch.float64))
    with pytest.raises(TypeError, match="input"):
        layer([1.0, 2.0])


def test_compile_dynamic_shapes():
    layer, x = make("2d-depthwise-even", "max", padding_mode="symmetric")
    testing.check_compile(layer, [x], dynamic=True)


def test_thread_independence():
    layer, x = make("3_1d", "gauss")
    testing.check_thread_independence(layer, [x.requires_grad_(True)])


def test_meta_move_after_forward():
    layer, x = make("2d-nonsquare", "gauss", padding_mode="reflect")
    layer.eval()
    with torch.no_grad():
        layer(x)
        layer.to("meta")
        assert layer(x.to("meta")).shape == layer.to_empty(device="cpu").eval()(x).shape


# ----------------------------------------------------------------------------- CUDA (run on the GPU machine)

@testing.cuda
@testing.requires_cuda
@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", ["1d", "2d-nonsquare", "2d-depthwise-even", "3d-nonsquare", "2_1d", "2dK1d-1"])
def test_cpu_cuda_parity(name, version):
    layer, x = make(name, version)
    cpu_out, cpu_grads = grads(layer, x, layer)
    layer.cuda()
    out, g = grads(layer, x.cuda(), layer)
    torch.testing.assert_close(out.cpu(), cpu_out, atol=1e-10, rtol=1e-10)
    for a, b in zip(g, cpu_grads):
        torch.testing.assert_close(a.cpu(), b, atol=1e-9, rtol=1e-9)


@testing.cuda
@testing.requires_cuda
def test_device_moves_after_forward_cuda():
    layer, x = make("2d-nonsquare", "gauss", padding_mode="symmetric")
    layer.eval()
    with torch.no_grad():
        ref = layer(x)
        layer.cuda()
        torch.testing.assert_close(layer(x.cuda()).cpu(), ref)
        assert layer._kernel_cache[2].is_cuda
        layer.cpu()
        torch.testing.assert_close(layer(x), ref)


@testing.cuda
@testing.requires_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_and_autocast_cuda(dtype):
    layer, x = make("2d-depthwise-even", "gauss", dtype=torch.float32)
    layer.cuda()
    x = x.cuda()
    ref = layer(x)
    with torch.autocast("cuda", dtype=dtype):
        out = layer(x)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=5e-2, rtol=5e-2)
    layer.to(dtype)
    torch.testing.assert_close(layer(x.to(dtype)).float(), ref, atol=5e-2, rtol=5e-2)


@testing.cuda
@testing.requires_cuda
def test_inductor_cuda():
    layer, x = make("2d-depthwise-even", "gauss", dtype=torch.float32)
    layer.cuda()
    x = x.cuda().requires_grad_(True)
    compiled = torch.compile(layer, fullgraph=True)
    torch.testing.assert_close(compiled(x), layer(x), atol=1e-5, rtol=1e-5)
    (g,) = torch.autograd.grad(compiled(x).sum(), layer.P)
    (gr,) = torch.autograd.grad(layer(x).sum(), layer.P)
    torch.testing.assert_close(g, gr, atol=1e-4, rtol=1e-4)
    torch._dynamo.reset()
