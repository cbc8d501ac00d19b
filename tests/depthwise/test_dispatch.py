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
    # CUDA: the dense kernel beat the sparse one at every ConvNeXt stage on the H100, so 'auto'
    # never picks sparse there (v0/v1 take the dense path like gauss).
    assert choose_method(34, (17, 17), version="v0", device="cuda", **dw) == "dense"
    assert choose_method(34, (17, 17), version="v0", device="cuda", spatial_size=(56, 56), **dw) == "dense"
    assert choose_method(4, (17, 17), version="v1", device="cuda", spatial_size=(112, 112), **dw) == "dense"
    assert choose_method(34, (17, 17), version="v0", device="cuda", spatial_size=(28, 28), **dw) == "dense"
    assert choose_method(34, (17, 17), version="v0", spatial_size=(7, 7), **dw) == "sparse"
    # CPU, channels_last input without a graph (inference): oneDNN's channels_last forward wins
    # over the dense path; training and NCHW input keep it; the sparse choice is unchanged.
    for kw in (dict(channels_last=True, needs_grad=False), dict(channels_last=True), dict(needs_grad=False)):
        expected = "construct" if kw == dict(channels_last=True, needs_grad=False) else "dense"
        assert choose_method(34, (17, 17), version="gauss", **kw, **dw) == expected
        assert choose_method(34, (17, 17), version="v0", **kw, **dw) == "sparse"
        assert choose_method(34, (17, 17), version="gauss", device="cuda", **kw, **dw) == "dense"
    assert set(METHODS) == {"auto", "dense", "sparse", "construct"}


def test_layer_dispatch_on_channels_last_cpu_input():
    """Dcls2d passes the input's layout and whether it records a graph; the paths agree."""
    import torch

    from learnable_ops.nn import Dcls2d

    layer = Dcls2d(8, 8, kernel_count=5, dilated_kernel_size=9, padding=4, groups=8, version="gauss")
    x = torch.randn(2, 8, 12, 12)
    xc = x.to(memory_format=torch.channels_last)
    assert layer._resolve_method(x) == "dense" and layer._resolve_method(xc) == "dense"
    with torch.no_grad():
        assert layer._resolve_method(xc) == "construct" and layer._resolve_method(x) == "dense"
        torch.testing.assert_close(layer(xc), layer(x), atol=1e-5, rtol=1e-5)
    layer.requires_grad_(False)
    assert layer._resolve_method(xc) == "construct"
    assert layer._resolve_method(xc.requires_grad_()) == "dense"
