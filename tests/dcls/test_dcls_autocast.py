"""Dcls2d/Dcls1d depthwise layers under autocast take the native paths in the autocast dtype."""
import pytest
import torch

import learnable_ops
from learnable_ops.nn import Dcls1d, Dcls2d


def _layer(cls, version, method, **kw):
    torch.manual_seed(0)
    layer = cls(8, 8, kernel_count=6, dilated_kernel_size=7, groups=8, padding=3, version=version,
                method=method, **kw)
    return layer


@pytest.mark.parametrize("version", ["v0", "v1", "gauss"])
@pytest.mark.parametrize("method", ["auto", "dense", "sparse", "construct"])
def test_autocast_paths_match_float32(version, method):
    if method == "sparse" and version == "gauss":
        pytest.skip("the sparse path serves v0/v1 only")
    layer = _layer(Dcls2d, version, method)
    x = torch.randn(2, 8, 12, 11, requires_grad=True)
    ref = layer(x)
    (gref_x, gref_w, gref_p) = torch.autograd.grad(ref.square().sum(), [x, layer.weight, layer.P])
    taken = []
    hook = layer.register_forward_pre_hook(lambda m, args: taken.append(m._resolve_method(args[0])))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    hook.remove()
    assert out.dtype == torch.bfloat16
    if method != "auto":
        assert taken == [method]
    torch.testing.assert_close(out.float(), ref, atol=6e-2, rtol=6e-2)
    gx, gw, gp = torch.autograd.grad(out.float().square().sum(), [x, layer.weight, layer.P])
    assert gx.dtype == torch.float32 and gw.dtype == torch.float32 and gp.dtype == torch.float32
    for got, want in ((gx, gref_x), (gw, gref_w), (gp, gref_p)):
        torch.testing.assert_close(got, want, atol=0.15 * want.abs().max().item(), rtol=0.1)


def test_auto_uses_the_autocast_dtype_for_dispatch():
    layer = _layer(Dcls2d, "v0", "auto")
    x = torch.randn(1, 8, 12, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # Under autocast the input dtype differs from the parameters' and 'auto' no longer
        # falls back to construct: it picks a native path for bfloat16.
        assert layer._resolve_method(x) in ("dense", "sparse")
    # Outside autocast a dtype mismatch still means construct (F.conv would raise otherwise).
    assert layer._resolve_method(x.to(torch.float64)) == "construct"


def test_sparse_keeps_float32_positions_under_autocast(monkeypatch):
    # bfloat16 would round a position near 7 to a multiple of 1/32: the sparse op gets the
    # float32 parameter itself (it computes the corner weights in float32).
    layer = _layer(Dcls1d, "v0", "sparse")
    seen = []
    real = learnable_ops.dcls_sparse_depthwise

    def spy(input, weight, P, *args):
        seen.append((input.dtype, weight.dtype, P))
        return real(input, weight, P, *args)

    monkeypatch.setattr(learnable_ops, "dcls_sparse_depthwise", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(torch.randn(1, 8, 20))
    (in_dtype, w_dtype, P), = seen
    assert in_dtype == w_dtype == torch.bfloat16
    assert P is layer.P and P.dtype == torch.float32
