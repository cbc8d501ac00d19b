"""``dcls_construct`` (forward + backward) against a plain-PyTorch broadcast construction.

The baseline, :func:`broadcast_construct`, builds the kernel as DCLS 0.1.x does
(with the axis convention fixed): an expanded index grid minus the positions,
a ``(*D, n, Co, Ci/g, Kc)`` tensor, reduced over the axes, normalised over the
grid and contracted with the weights, all through autograd. Its memory is
``O(prod(D) * Co * Ci/g * Kc)``; the fused op's is the kernel plus the parameters.

Besides times, every case records peak memory in ``extra``: allocations made
during one forward + backward (inputs and the incoming kernel gradient
excluded), as a multiple of the dense kernel's size (target <= 4x). On CUDA it
is ``torch.cuda.max_memory_allocated``; on CPU it is replayed from the
allocation events of :mod:`torch.profiler` (every ATen allocation, in time
order), see :func:`cpu_peak_bytes`.
"""

from __future__ import annotations

import torch

import learnable_ops as lo
from learnable_ops.benchmarks.runner import Case


def broadcast_construct(weight, P, SIG, dilated_kernel_size, version):
    """The 0.1.x construction: one broadcast tensor of ``prod(D) * n * Co * Ci/g * Kc`` elements."""
    D = tuple(dilated_kernel_size)
    n = len(D)
    co, cig, kc = weight.shape
    grids = torch.meshgrid(*[torch.arange(d, device=weight.device, dtype=weight.dtype) for d in D], indexing="ij")
    idx = torch.stack(grids, dim=n).view(*D, n, 1, 1, 1).expand(*D, n, co, cig, kc)
    centre = torch.tensor([d // 2 for d in D], device=weight.device, dtype=weight.dtype).view(n, 1, 1, 1)
    X = idx - (P + centre)
    grid_dims = tuple(range(n))
    if version == "gauss":
        X = torch.exp(-0.5 * (X / (SIG.abs() + 0.27)).norm(2, dim=n) ** 2)
    elif version == "max":
        X = torch.relu(SIG.abs() + 1 - X.abs()).prod(dim=n)
    else:
        X = torch.relu(1 - X.abs()).prod(dim=n)
    if version != "v0":
        X = X / (X.sum(dim=grid_dims, keepdim=True) + 1e-7)
    K = (X * weight).sum(-1)
    return K.permute(n, n + 1, *grid_dims)


def cpu_peak_bytes(fn) -> int:
    """Peak of the bytes allocated through ATen's CPU allocator while ``fn()`` runs, above what
    was live before: the running sum of :mod:`torch.profiler`'s allocation events in time order.
    Per-thread scratch of a kernel (``std::vector``) is not seen; for ``dcls_construct`` that is
    ``prod(D)`` plus ``9 * max(D)`` accumulators per thread."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []

    def walk(nodes):
        for node in nodes:
            size = getattr(node.extra_fields, "alloc_size", None)
            if node.name == "[memory]" and size is not None:
                events.append((node.start_time_ns, size))
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak


def peak_bytes(fn, device: str) -> int:
    """Peak extra memory of one call of ``fn`` on ``device`` (see the module docstring)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    return cpu_peak_bytes(fn)


def _params(co, cig, kc, D, version, device, broadcast=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    n = len(D)
    weight = torch.randn(co, cig, kc, generator=gen) * 0.1
    P = torch.randn(n, 1 if broadcast else co, cig, kc, generator=gen) * torch.tensor([d / 5 for d in D]).view(n, 1, 1, 1)
    SIG = torch.rand(P.shape, generator=gen) * 0.5 + 0.23 if version in ("gauss", "max") else None
    leaves = [t.to(device).requires_grad_() for t in (weight, P, SIG) if t is not None]
    weight, P = leaves[0], leaves[1]
    SIG = leaves[2] if len(leaves) > 2 else None
    grad = torch.randn(co, cig, *D, generator=gen).to(device)
    return weight, P, SIG, leaves, grad


def _fwd_bwd(construct, weight, P, SIG, D, version, leaves, grad):
    return lambda: torch.autograd.grad(construct(weight, P, SIG, D, version), leaves, grad)


def _case(name, co, cig, kc, D, version, device, broadcast=False, with_baseline=True, extra=None):
    weight, P, SIG, leaves, grad = _params(co, cig, kc, D, version, device, broadcast)
    ours = _fwd_bwd(lo.dcls_construct, weight, P, SIG, D, version, leaves, grad)
    theirs = _fwd_bwd(broadcast_construct, weight, P, SIG, D, version, leaves, grad)
    kernel_bytes = grad.numel() * grad.element_size()
    info = {"kernel_mib": kernel_bytes / 2**20}
    ours_peak = peak_bytes(ours, device)
    info["ours_peak_mib"] = ours_peak / 2**20
    info["ours_peak_over_kernel"] = ours_peak / kernel_bytes
    if with_baseline:
        base_peak = peak_bytes(theirs, device)
        info["baseline_peak_mib"] = base_peak / 2**20
        info["baseline_peak_over_kernel"] = base_peak / kernel_bytes
    info.update(extra or {})
    shape = f"Co={co} Ci/g={cig} Kc={kc} D={D}" + (" P(n,1,..)" if broadcast else "")
    return Case("dcls", name, shape, ours, theirs, "broadcast construct (0.1.x)", target=0.25, extra=info)


def cases(device: str, size: str = "full") -> list[Case]:
    small = size == "small"
    cuda = device.startswith("cuda")
    # Depthwise ConvNeXt-dcls stage (C = 96, D = 17, Kc = 34), every version.
    channels = 32 if small else 96
    out = [
        _case(f"{version} depthwise fwd+bwd", channels, 1, 34, (17, 17), version, device)
        for version in lo.DCLS_VERSIONS
    ]
    # Positions shared over output channels (a dense layer): the broadcast-P reduction.
    out.append(_case("v1 dense, P broadcast fwd+bwd", 16, 16, 9, (9, 9), "v1", device, broadcast=True))
    # The dense 64 -> 64 gauss layer of DCLS-Audio's shape (D = 23, Kc = 26): 0.1.x needs 2.6 GiB.
    # Its baseline takes ~20 s per call on a CPU, so small runs (and CPU runs) measure a 16 -> 16
    # layer against the baseline and the 64 -> 64 layer's memory on our side only.
    dense_co = 64 if (cuda and not small) else 16
    dense64 = {}
    if dense_co != 64:
        w, P, SIG, leaves, grad = _params(64, 64, 26, (23, 23), "gauss", device)
        step = _fwd_bwd(lo.dcls_construct, w, P, SIG, (23, 23), "gauss", leaves, grad)
        dense64["dense64_ours_peak_mib"] = peak_bytes(step, device) / 2**20
        dense64["dense64_kernel_mib"] = grad.numel() * grad.element_size() / 2**20
    out.append(_case("gauss dense fwd+bwd", dense_co, dense_co, 26, (23, 23), "gauss", device, extra=dense64))
    # 3D: a 5x7x7 kernel with 20 taps.
    out.append(_case("gauss 3d fwd+bwd", 8 if small else 32, 4, 20, (5, 7, 7), "gauss", device))
    return out


def memory_table(results) -> str:
    """Markdown table of the memory figures in the results' ``extra``."""
    lines = [
        "| case | shape | kernel (MiB) | ours peak (MiB) | ours / kernel | baseline peak (MiB) | baseline / kernel |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        e = r.extra
        base, base_ratio = "", ""
        if "baseline_peak_mib" in e:
            base, base_ratio = f"{e['baseline_peak_mib']:.1f}", f"{e['baseline_peak_over_kernel']:.1f}x"
        lines.append(
            f"| {r.name} | {r.shape} | {e['kernel_mib']:.2f} | {e['ours_peak_mib']:.2f} | "
            f"{e['ours_peak_over_kernel']:.2f}x | {base} | {base_ratio} |"
        )
        if "dense64_ours_peak_mib" in e:
            peak, kernel = e["dense64_ours_peak_mib"], e["dense64_kernel_mib"]
            lines.append(
                f"| gauss dense fwd+bwd (ours only) | Co=64 Ci/g=64 Kc=26 D=(23, 23) | {kernel:.2f} | "
                f"{peak:.2f} | {peak / kernel:.2f}x | | |"
            )
    return "\n".join(lines) + "\n"
