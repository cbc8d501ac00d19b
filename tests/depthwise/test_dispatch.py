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
    assert set(METHODS) == {"auto", "dense", "sparse", "construct"}
