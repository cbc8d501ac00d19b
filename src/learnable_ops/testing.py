"""Test kit shared by every family's tests (and usable by anyone adding an op).

Every check works in float64 unless told otherwise:

* :func:`assert_matches_reference` compares an op (values and gradients)
  against a slow, obviously correct plain-PyTorch reference;
* :func:`check_gradcheck` runs ``gradcheck`` and ``gradgradcheck``;
* :func:`check_opcheck` runs :func:`torch.library.opcheck` with all its test utils;
* :func:`check_compile` runs ``torch.compile(fullgraph=True)`` and compares
  values and gradients with eager mode, with zero graph breaks;
* :func:`check_thread_independence` runs on 1 and 2 CPU threads and demands
  bit-identical results;
* :func:`check_cpu_cuda` runs on CPU and CUDA and compares;
* :data:`requires_cuda` marks a test that needs a GPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
"""Marks a test that needs a CUDA device; use together with ``pytest.mark.cuda``."""

cuda = pytest.mark.cuda


def devices() -> list:
    """``pytest.param`` list of the devices to test: cpu, and cuda where present."""
    params = [pytest.param("cpu", id="cpu")]
    params.append(pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, requires_cuda]))
    return params


def _tensors(values) -> list[torch.Tensor]:
    if isinstance(values, torch.Tensor):
        return [values]
    if isinstance(values, (tuple, list)):
        return [v for v in values if isinstance(v, torch.Tensor)]
    return []


def _grads_of(fn: Callable, args: Sequence, seed: int = 0):
    """Values of fn(*args) and the gradients of a random projection of them."""
    args = [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]
    out = fn(*args)
    outs = _tensors(out)
    leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    grads = []
    if leaves:
        gen = torch.Generator().manual_seed(seed)
        proj = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o) for o in outs]
        loss = sum((o * p).sum() for o, p in zip(outs, proj))
        grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [o.detach() for o in outs], [None if g is None else g.detach() for g in grads]


def assert_matches_reference(
    op: Callable, reference: Callable, args: Sequence, *, atol: float = 1e-10, rtol: float = 1e-10, grads: bool = True
) -> None:
    """Values (and gradients of the inputs that require grad) of ``op`` equal ``reference``."""
    out, g = _grads_of(op, args) if grads else (_tensors(op(*args)), [])
    ref, rg = _grads_of(reference, args) if grads else (_tensors(reference(*args)), [])
    assert len(out) == len(ref)
    for o, r in zip(out, ref):
        torch.testing.assert_close(o, r.to(o.dtype), atol=atol, rtol=rtol)
    for a, b in zip(g, rg):
        if a is None or b is None:
            assert a is None and b is None or (a if a is not None else b).abs().max() == 0
            continue
        torch.testing.assert_close(a, b.to(a.dtype), atol=atol, rtol=rtol)


def check_gradcheck(fn: Callable, args: Sequence, *, gradgrad: bool = False, **kwargs) -> None:
    """``torch.autograd.gradcheck`` (and optionally ``gradgradcheck``) in float64."""
    assert torch.autograd.gradcheck(fn, tuple(args), **kwargs)
    if gradgrad:
        assert torch.autograd.gradgradcheck(fn, tuple(args), **kwargs)


def check_opcheck(op, args: Sequence, kwargs: dict | None = None) -> None:
    """``torch.library.opcheck`` with every test util (schema, autograd registration,
    fake tensor, AOT dispatch static and dynamic)."""
    torch.library.opcheck(op, tuple(args), kwargs or {}, raise_exception=True)


def check_compile(fn: Callable, args: Sequence, *, atol: float = 1e-10, rtol: float = 1e-10, dynamic: bool | None = None):
    """``torch.compile(fn, fullgraph=True)`` gives eager's values and gradients,
    with zero graph breaks (fullgraph raises on any)."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, dynamic=dynamic, backend="aot_eager")
    out, g = _grads_of(fn, args)
    cout, cg = _grads_of(compiled, args)
    for a, b in zip(out, cout):
        torch.testing.assert_close(b, a, atol=atol, rtol=rtol)
    for a, b in zip(g, cg):
        if a is not None:
            torch.testing.assert_close(b, a, atol=atol, rtol=rtol)
    explanation = torch._dynamo.explain(fn)(*args)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()


def check_thread_independence(fn: Callable, args: Sequence) -> None:
    """Values and gradients are bit-identical with 1 and 2 CPU threads."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        out1, g1 = _grads_of(fn, args)
        torch.set_num_threads(2)
        out2, g2 = _grads_of(fn, args)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(out1 + list(g1), out2 + list(g2)):
        if a is None:
            assert b is None
            continue
        assert torch.equal(a, b), "result depends on the number of threads"


def check_cpu_cuda(fn: Callable, args: Sequence, *, atol: float = 1e-10, rtol: float = 1e-10) -> None:
    """CPU and CUDA give the same values and gradients (run on a GPU machine)."""
    out, g = _grads_of(fn, args)
    cuda_args = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    cout, cg = _grads_of(fn, cuda_args)
    for a, b in zip(out, cout):
        torch.testing.assert_close(b.cpu(), a, atol=atol, rtol=rtol)
    for a, b in zip(g, cg):
        if a is not None:
            torch.testing.assert_close(b.cpu(), a, atol=atol, rtol=rtol)


def compile_kernel_emulator(source, out_dir, include_dirs: Sequence) -> str:
    """Builds a host program that replays CUDA kernel bodies on the CPU (the ``*_emulation.cpp``
    drivers of the tests) with the host C++ compiler; skips the test without one."""
    import shutil
    import subprocess
    from pathlib import Path

    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no host C++ compiler")
    binary = Path(out_dir) / Path(source).stem
    cmd = [compiler, "-std=c++17", "-O1", *(f"-I{d}" for d in include_dirs), str(source), "-o", str(binary)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return str(binary)


def cuda_kernels(fn: Callable):
    """``(fn(), names)``: fn's result and the names of the CUDA kernels it launched (the
    profiler's device events), synchronised before the profile closes."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        result = fn()
        torch.cuda.synchronize()
    return result, [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
