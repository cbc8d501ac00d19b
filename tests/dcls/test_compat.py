"""load_dcls_state_dict against a re-implementation of DCLS 0.1.x's kernel construction.

``dcls01_construct`` follows the 0.1.x formulas (background notes, section 3) in
0.1.x's own broadcast style, axis maps included: the tap centre ``P[a] + floor(D_a/2)``
moves along kernel axis ``pi(a)``, reversed for v1/max/gauss, ``(0, 2, 1)`` for 3-D v0.
It does not import ``dcls``.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from learnable_ops.compat import load_dcls_state_dict
from learnable_ops.nn import Dcls1d, Dcls2_1d, Dcls2d, Dcls2dK1d, Dcls3_1d, Dcls3d

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def dcls01_axes(version, n):
    if version == "v0":
        return (0, 2, 1) if n == 3 else tuple(range(n))
    return tuple(reversed(range(n)))


def dcls01_construct(W, P, SIG, D, version, sigma_min=0.27):
    """0.1.x ConstructKernel{1,2,3}d: W (Co, Ci, Kc), P/SIG (n, Co, Ci, Kc) -> (Co, Ci, *D)."""
    n = len(D)
    pi = dcls01_axes(version, n)
    grid = torch.meshgrid(*[torch.arange(d, dtype=W.dtype) for d in D], indexing="ij")
    # IDX[..., a, o, i, k]: the index along the axis that P[a] drives.
    idx = torch.stack([grid[pi[a]] for a in range(n)], dim=-1).reshape(*D, n, 1, 1, 1)
    lim = torch.tensor([d // 2 for d in D], dtype=W.dtype).view(n, 1, 1, 1)
    centre = P + lim
    if version == "v0":
        f = torch.floor(centre)
        r = centre - f
        phi = ((1 - r) * (idx == f) + r * (idx == f + 1)).prod(dim=n)
    else:
        if version == "v1":
            phi = torch.relu(1 - (idx - centre).abs()).prod(dim=n)
        elif version == "max":
            phi = torch.relu(SIG.abs() + 1 - (idx - centre).abs()).prod(dim=n)
        else:
            phi = torch.exp(-0.5 * ((idx - centre) / (SIG.abs() + sigma_min)).norm(2, dim=n) ** 2)
        phi = phi / (phi.sum(dim=tuple(range(n)), keepdim=True) + 1e-7)
    kernel = (phi * W).sum(-1)
    return kernel.permute(n, n + 1, *range(n))


def dcls01_state(layer, seed):
    """A random state_dict in 0.1.x's convention: positions in its clamp range and beyond."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, p in layer.state_dict().items():
        state[name] = torch.randn(p.shape, generator=gen, dtype=p.dtype)
    half = torch.tensor([d // 2 for d in layer.dilated_kernel_size], dtype=torch.float64)
    P = state["P"]
    state["P"] = (torch.rand(P.shape, generator=gen, dtype=P.dtype) * 2.4 - 1.2) * half.view(-1, *[1] * (P.dim() - 1))
    if "SIG" in state:
        state["SIG"] = torch.rand(P.shape, generator=gen, dtype=P.dtype) * 1.5 - 0.5
    return state


def dcls01_forward(layer, state, x, sigma_min=0.27):
    W, P, SIG = state["weight"], state["P"], state.get("SIG")
    dense = tuple(layer.dense_kernel_size)
    co, cig = W.shape[:2]
    if dense:
        rows = W[0, 0, ..., 0].numel() * cig
        W = W.reshape(co, rows, -1)
        P = P.reshape(P.shape[0], P.shape[1], rows, -1)
        SIG = None if SIG is None else SIG.reshape(P.shape)
    kernel = dcls01_construct(W, P, SIG, layer.dilated_kernel_size, layer.version, sigma_min)
    kernel = kernel.reshape((co, cig) + tuple(layer.kernel_size))
    pad = layer.padding
    return CONV[x.dim() - 2](x, kernel, state.get("bias"), layer.stride, pad, 1, layer.groups)


CASES = [
    (Dcls1d, dict(in_channels=2, out_channels=3, kernel_count=3, dilated_kernel_size=8, padding=3), (1, 2, 12)),
    (Dcls2d, dict(in_channels=2, out_channels=2, kernel_count=3, dilated_kernel_size=(3, 9), padding=(1, 4)),
     (1, 2, 7, 11)),
    (Dcls2d, dict(in_channels=4, out_channels=4, kernel_count=2, dilated_kernel_size=(6, 5), groups=4, padding=2),
     (1, 4, 8, 8)),
    (Dcls3d, dict(in_channels=2, out_channels=2, kernel_count=2, dilated_kernel_size=(3, 4, 5), padding=1),
     (1, 2, 5, 6, 7)),
    (Dcls3d, dict(in_channels=1, out_channels=2, kernel_count=3, dilated_kernel_size=(5, 2, 3)), (1, 1, 6, 4, 5)),
    (Dcls3_1d, dict(in_channels=2, out_channels=2, kernel_count=2, dense_kernel_size=(2, 3), dilated_kernel_size=6,
                    padding=(0, 1, 2)), (1, 2, 3, 5, 9)),
    (Dcls2dK1d, dict(in_channels=2, out_channels=2, kernel_count=2, dilated_kernel_size=7, flat_dim=0,
                     padding=(3, 0)), (1, 2, 9, 4)),
]


@pytest.mark.parametrize("version", ["v0", "v1", "max", "gauss"])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_outputs_identical_to_dcls01(case, version):
    cls, kwargs, shape = CASES[case]
    layer = cls(**kwargs, version=version, dtype=torch.float64)
    state = dcls01_state(layer, seed=case)
    x = torch.randn(shape, dtype=torch.float64)
    load_dcls_state_dict(layer, state)
    torch.testing.assert_close(layer(x), dcls01_forward(layer, state, x), atol=1e-12, rtol=1e-12)
    assert torch.equal(layer.weight, state["weight"])


@pytest.mark.parametrize("version", ["v1", "max", "gauss"])
def test_dcls2_1d_git_head(version):
    # DCLS's unreleased Dcls2_1d uses a Gaussian width |SIG| + 1.
    layer = Dcls2_1d(2, 3, 2, dense_kernel_size=3, dilated_kernel_size=7, padding=(1, 3), version=version,
                     dtype=torch.float64)
    state = dcls01_state(layer, seed=11)
    x = torch.randn(2, 2, 5, 9, dtype=torch.float64)
    load_dcls_state_dict(layer, state)
    sigma_min = 1.0 if version == "gauss" else 0.27
    torch.testing.assert_close(layer(x), dcls01_forward(layer, state, x, sigma_min), atol=1e-12, rtol=1e-12)


def test_dcls01_nonsquare_v1_bug_is_reproduced():
    # 0.1.x: D = (3, 9), v1, P = (1, 0) gives an all-zero kernel; the loaded layer computes the same.
    layer = Dcls2d(1, 1, 1, dilated_kernel_size=(3, 9), version="v1", bias=False, dtype=torch.float64)
    state = {"weight": torch.ones(1, 1, 1, dtype=torch.float64),
             "P": torch.tensor([1.0, 0.0], dtype=torch.float64).view(2, 1, 1, 1)}
    assert dcls01_construct(state["weight"], state["P"], None, (3, 9), "v1").abs().max() == 0
    load_dcls_state_dict(layer, state)
    assert layer.construct_kernel().abs().max() < 1e-12
    # Same tap where 0.1.x puts it when it is in range: P = (0, 1) drives column 1 + 1, row 4 - 3.
    state["P"] = torch.tensor([0.0, -3.0], dtype=torch.float64).view(2, 1, 1, 1)
    load_dcls_state_dict(layer, state)
    expected = dcls01_construct(state["weight"], state["P"], None, (3, 9), "v1")
    assert expected[0, 0, 1, 1] > 0.99
    torch.testing.assert_close(layer.construct_kernel(), expected, atol=1e-12, rtol=0)


def test_nested_model_and_shared_positions():
    a = Dcls2d(3, 3, 4, dilated_kernel_size=(5, 7), padding=(2, 3), groups=3, version="gauss", dtype=torch.float64)
    b = Dcls2d(3, 3, 4, dilated_kernel_size=(5, 7), padding=(2, 3), groups=3, version="gauss", dtype=torch.float64)
    b.P, b.SIG = a.P, a.SIG
    model = nn.Sequential(a, nn.ReLU(), nn.Sequential(b))
    state = {**{f"0.{k}": v for k, v in dcls01_state(a, 3).items()}}
    state.update({k.replace("0.", "2.0.", 1): v for k, v in state.items()})
    state["2.0.weight"] = torch.randn_like(state["0.weight"])
    load_dcls_state_dict(model, state)
    x = torch.randn(1, 3, 8, 9, dtype=torch.float64)
    strip = lambda prefix: {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}  # noqa: E731
    expected = dcls01_forward(b, strip("2.0."), torch.relu(dcls01_forward(a, strip("0."), x)))
    torch.testing.assert_close(model(x), expected, atol=1e-12, rtol=1e-12)
    with pytest.raises(RuntimeError, match="Unexpected"):
        load_dcls_state_dict(model, {**state, "extra": torch.zeros(1)})
    with pytest.raises(TypeError, match="module"):
        load_dcls_state_dict(state, model)
