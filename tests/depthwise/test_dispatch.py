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
    # CUDA: sparse only on planes of at least 56x56 (it loses to the dense kernel on smaller ones).
    assert choose_method(34, (17, 17), version="v0", device="cuda", spatial_size=(56, 56), **dw) == "sparse"
    assert choose_method(34, (17, 17), version="v0", device="cuda", spatial_size=(28, 28), **dw) == "dense"
    assert choose_method(34, (17, 17), version="v0", spatial_size=(7, 7), **dw) == "sparse"
    assert set(METHODS) == {"auto", "dense", "sparse", "construct"}
