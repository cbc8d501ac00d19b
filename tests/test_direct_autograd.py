"""The functional wrappers' direct eager autograd equals the ops' registered autograd."""
import pytest
import torch

import learnable_ops as lo

CASES = {
    "pad-reflect": (lambda x, s: lo.pad(x, (2, 3, 1, 4), "reflect"),
                    lambda x, s: torch.ops.learnable_ops.pad(x, [2, 3, 1, 4], "reflect")),
    "pad-polynomial": (lambda x, s: lo.pad(x, (2, 1, 1, 2), "polynomial", order=2),
                       lambda x, s: torch.ops.learnable_ops.pad(x, [2, 1, 1, 2], "polynomial", [2, 2], [1, 1])),
    "shift-active": (lambda x, s: lo.shift(x, s, "symmetric", "active"),
                     lambda x, s: torch.ops.learnable_ops.shift(x, s, "symmetric", "active")),
    "shift-sparse": (lambda x, s: lo.shift(x, s, "border", "sparse"),
                     lambda x, s: torch.ops.learnable_ops.shift(x, s, "border", "sparse")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_direct_equals_registered(name):
    direct, registered = CASES[name]
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    s = (torch.rand(3, 2, dtype=torch.float64) * 4 - 2).requires_grad_()
    out_d, out_r = direct(x, s), registered(x, s)
    assert type(out_d.grad_fn).__name__.startswith("Direct")
    assert not type(out_r.grad_fn).__name__.startswith("Direct")
    assert torch.equal(out_d, out_r)
    g = torch.randn_like(out_d)
    leaves = [x, s] if name.startswith("shift") else [x]
    for a, b in zip(torch.autograd.grad(out_d, leaves, g), torch.autograd.grad(out_r, leaves, g)):
        assert torch.equal(a, b)
    # create_graph: the backward goes through the dispatcher, so second derivatives match too.
    gd = torch.autograd.grad(direct(x, s), leaves, g, create_graph=True)
    gr = torch.autograd.grad(registered(x, s), leaves, g, create_graph=True)
    if all(t.requires_grad for t in gd + gr):
        vd = torch.autograd.grad(sum((t * t).sum() for t in gd), leaves, allow_unused=True)
        vr = torch.autograd.grad(sum((t * t).sum() for t in gr), leaves, allow_unused=True)
        for a, b in zip(vd, vr):
            assert (a is None and b is None) or torch.allclose(a, b)


def test_no_graph_without_grad():
    x = torch.randn(1, 2, 5, 5)
    assert lo.pad(x, (1, 1, 1, 1), "reflect").grad_fn is None
    with torch.no_grad():
        assert lo.shift(x.requires_grad_(), torch.zeros(2, 2), "zeros").grad_fn is None
