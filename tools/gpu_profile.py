"""Kernel-level profiles of the workloads whose GPU targets are missed.

    python tools/gpu_profile.py [name ...]   # writes tables to stdout

For each workload: wall time per iteration (CUDA events), the number of kernel launches
per iteration, and torch.profiler's table of the kernels sorted by CUDA time.
"""
import os
import sys

import torch
import torch.nn.functional as F

import learnable_ops as lo

dev = "cuda"


def _fwd_bwd(fn, *inputs):
    def run():
        out = fn(*inputs)
        out.backward(torch.ones_like(out))
    return run


def _with_env(fn, **env):
    """fn with the tuning switches `env` set for the call (read by the ops at every call)."""
    def run():
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            fn()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return run


def _with_ring(fn):
    """fn with diff_conv2d's ring path forced (ops/diffconv.py's _ring_pays is False on CUDA)."""
    from learnable_ops.ops import diffconv as dc

    def run():
        saved = dc._ring_pays
        dc._ring_pays = lambda *args: True
        try:
            fn()
        finally:
            dc._ring_pays = saved
    return run


def workloads():
    x = torch.randn(64, 96, 56, 56, device=dev, requires_grad=True)
    yield "pad zeros fwd+bwd (ours)", _fwd_bwd(lambda t: lo.pad(t, (3, 3, 3, 3), "zeros"), x)
    yield "pad zeros fwd+bwd (F.pad)", _fwd_bwd(lambda t: F.pad(t, (3, 3, 3, 3)), x)
    yield "pad reflect fwd+bwd (ours)", _fwd_bwd(lambda t: lo.pad(t, (3, 3, 3, 3), "reflect"), x)
    yield "pad reflect fwd+bwd (F.pad)", _fwd_bwd(lambda t: F.pad(t, (3, 3, 3, 3), mode="reflect"), x)
    xb = torch.randn(64, 96, 56, 56, device=dev, dtype=torch.bfloat16, requires_grad=True)
    s = ((torch.rand(96, 2, device=dev) * 2 - 1) * 1.5).requires_grad_()
    xf = torch.randn(64, 96, 56, 56, device=dev, requires_grad=True)
    gf, gb = torch.randn_like(xf), torch.randn_like(xb)

    def _shift_fb(t, g, pm, m):
        return lambda: lo.shift(t, s, pm, m).backward(g)

    yield "shift clone fp32", lambda: xf.detach().clone()
    yield "shift clone bf16", lambda: xb.detach().clone()
    for tag, t, g in (("fp32", xf, gf), ("bf16", xb, gb)):
        yield f"shift sparse zeros {tag} fwd", lambda t=t: lo.shift(t.detach(), s.detach(), "zeros", "sparse")
        yield f"shift active zeros {tag} fwd", lambda t=t: lo.shift(t.detach(), s.detach(), "zeros", "active")
        for pm in ("zeros", "reflect"):
            for m in ("sparse", "active"):
                yield f"shift {m} {pm} {tag} fwd+bwd", _shift_fb(t, g, pm, m)
        # The plane backward's other variants (cuda/shift.cu; the default is the split pass 1 with
        # the fold table): without the split, without the table, and neither (session 5's kernel).
        for pm in ("reflect", "periodic"):
            for m in ("sparse", "active"):
                for label, env in (("no split", {"LEARNABLE_OPS_SHIFT_BWD_SPLIT": "0"}),
                                   ("no fold table", {"LEARNABLE_OPS_SHIFT_FOLD_TABLE": "0"}),
                                   ("neither", {"LEARNABLE_OPS_SHIFT_BWD_SPLIT": "0", "LEARNABLE_OPS_SHIFT_FOLD_TABLE": "0"})):
                    yield f"shift {m} {pm} {tag} fwd+bwd ({label})", _with_env(_shift_fb(t, g, pm, m), **env)
        w3 = torch.randn(96, 1, 3, 3, device=dev, dtype=t.dtype, requires_grad=True)
        yield f"shift dw3x3 conv {tag} fwd+bwd", lambda t=t, g=g, w3=w3: F.conv2d(t, w3, padding=1, groups=96).backward(g)
    xd = torch.randn(16, 64, 128, 128, device=dev, requires_grad=True)
    gd = torch.randn_like(xd)
    for k in (3, 5, 7):
        wd = torch.randn(64, 64, k, k, device=dev, requires_grad=True)
        wdw = torch.randn(64, 1, k, k, device=dev, requires_grad=True)
        for kind, w, grp in (("dense", wd, 1), ("depthwise", wdw, 64)):
            # CUDA takes the padded path for every layer (ops/diffconv.py _ring_pays); dense
            # layers the channels_last route up to 5x5, NCHW above (cpp/diffconv.cpp).
            padded = lambda w=w, grp=grp: lo.diff_conv2d(xd, w, groups=grp).backward(gd)  # noqa: E731
            yield f"diffconv {kind} K={k} padded fwd+bwd", padded
            # The band fold that the in-place fold replaced, and the pad op's forward as a copy
            # box plus a ring kernel (both tuning switches; the NCHW route's fold and pads).
            yield f"diffconv {kind} K={k} padded band fold fwd+bwd", _with_env(
                padded, LEARNABLE_OPS_DIFFCONV_FOLD_INPLACE="0")
            yield f"diffconv {kind} K={k} padded split pad fwd+bwd", _with_env(
                padded, LEARNABLE_OPS_PAD_POLY_SPLIT="1")
            if kind == "dense":
                # NCHW tensors for cuDNN (cpp/diffconv.cpp's channels_last route off).
                yield f"diffconv {kind} K={k} padded nchw fwd+bwd", _with_env(
                    padded, LEARNABLE_OPS_DIFFCONV_CHANNELS_LAST="0")
                # The channels_last route with 4-row layout blocks (cuda/diffconv_layout.cuh).
                yield f"diffconv {kind} K={k} padded cl rows=4 fwd+bwd", _with_env(
                    padded, LEARNABLE_OPS_DIFFCONV_CHANNELS_LAST="1", LEARNABLE_OPS_DIFFCONV_LAYOUT_ROWS="4")
                yield f"diffconv {kind} K={k} padded cl rows=1 fwd+bwd", _with_env(
                    padded, LEARNABLE_OPS_DIFFCONV_CHANNELS_LAST="1", LEARNABLE_OPS_DIFFCONV_LAYOUT_ROWS="1")
                # The batch in 2 and 4 chunks (temporaries and cuDNN workspace per chunk).
                for chunks in ("2", "4"):
                    yield f"diffconv {kind} K={k} padded chunks={chunks} fwd+bwd", _with_env(
                        padded, LEARNABLE_OPS_DIFFCONV_CHUNKS=chunks)
            # The NCHW route's pads (depthwise layers, dense K=7) from diff_conv2d_pad_layout's
            # copy kernel plus the ring in place, or from a strided copy plus the ring.
            yield f"diffconv {kind} K={k} padded layout-pad fwd+bwd", _with_env(
                padded, LEARNABLE_OPS_DIFFCONV_LAYOUT_PAD="1")
            yield f"diffconv {kind} K={k} padded copy-pad fwd+bwd", _with_env(
                padded, LEARNABLE_OPS_DIFFCONV_COPY_PAD="1")
            # The ring path (zero-padded conv plus the strip corrections; CPU's route), forced.
            yield f"diffconv {kind} K={k} ring fwd+bwd", _with_ring(padded)
            yield f"diffconv {kind} K={k} conv same fwd+bwd", lambda w=w, grp=grp, k=k: F.conv2d(xd, w, padding=k // 2, groups=grp).backward(gd)
            if kind == "dense":
                # cuDNN's own kernels and workspace with channels_last tensors (the padded path's route).
                xcl = xd.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
                gcl = gd.contiguous(memory_format=torch.channels_last)
                yield f"diffconv {kind} K={k} conv same channels_last fwd+bwd", lambda w=w, k=k, xcl=xcl, gcl=gcl: F.conv2d(
                    xcl, w, padding=k // 2).backward(gcl)
            if kind == "depthwise":
                yield f"diffconv {kind} K={k} ours dw same fwd+bwd", lambda w=w: lo.depthwise_conv2d(xd, w).backward(gd)
            else:
                # cuDNN's three passes alone on the padded path's shapes (valid conv of the padded
                # input), NCHW and channels_last: which pass's algorithm takes the extra workspace.
                p = k // 2
                for fmt_name, fmt in (("nchw", torch.contiguous_format), ("cl", torch.channels_last)):
                    xp = torch.randn(16, 64, 128 + 2 * p, 128 + 2 * p, device=dev).contiguous(memory_format=fmt)
                    gp = gd.contiguous(memory_format=fmt)
                    wf = w.detach().contiguous(memory_format=fmt)
                    conv_bwd = torch.ops.aten.convolution_backward.default
                    yield f"diffconv cudnn K={k} {fmt_name} valid fwd", lambda xp=xp, wf=wf: F.conv2d(xp, wf)
                    yield f"diffconv cudnn K={k} {fmt_name} valid dgrad", lambda xp=xp, wf=wf, gp=gp: conv_bwd(
                        gp, xp, wf, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, False, False])
                    yield f"diffconv cudnn K={k} {fmt_name} valid wgrad", lambda xp=xp, wf=wf, gp=gp: conv_bwd(
                        gp, xp, wf, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False])
    for dtype in (torch.float32, torch.bfloat16):
        xs = torch.randn(128, 96, 56, 56, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
        w7 = torch.randn(96, 1, 7, 7, device=dev, dtype=dtype)
        w17 = torch.randn(96, 1, 17, 17, device=dev, dtype=dtype)
        yield f"inference dw 7x7 cuDNN channels_last 128x96x56x56 {dtype}", lambda t=xs, w=w7: F.conv2d(t, w, padding=3, groups=96)
        yield f"inference dw 7x7 cuDNN NCHW 128x96x56x56 {dtype}", lambda t=xs.contiguous(), w=w7: F.conv2d(t, w, padding=3, groups=96)
        yield f"inference dw 17x17 ours channels_last 128x96x56x56 {dtype}", lambda t=xs, w=w17: lo.depthwise_conv2d(t, w)
        yield f"inference dw 17x17 ours NCHW 128x96x56x56 {dtype}", lambda t=xs.contiguous(), w=w17: lo.depthwise_conv2d(t, w)
        if dtype == torch.bfloat16:
            # The tensor-core forward (cuda/depthwise_mma.cuh) at ConvNeXt's four stages, against
            # the direct kernel and cuDNN's 7x7.
            for c, hw in ((96, 56), (192, 28), (384, 14), (768, 7)):
                xm = torch.randn(128, c, hw, hw, device=dev, dtype=dtype)
                wm17 = torch.randn(c, 1, 17, 17, device=dev, dtype=dtype)
                wm7 = torch.randn(c, 1, 7, 7, device=dev, dtype=dtype)
                run17 = lambda t=xm, w=wm17: lo.depthwise_conv2d(t, w)  # noqa: E731
                yield f"mma dw 17x17 128x{c}x{hw}x{hw} bf16 (mma)", _with_env(run17, LEARNABLE_OPS_DEPTHWISE_MMA="1")
                yield f"mma dw 17x17 128x{c}x{hw}x{hw} bf16 (direct)", _with_env(run17, LEARNABLE_OPS_DEPTHWISE_MMA="0")
                yield f"mma dw 7x7 128x{c}x{hw}x{hw} bf16 (cuDNN NCHW)", lambda t=xm, w=wm7, c=c: F.conv2d(t, w, padding=3, groups=c)
                # Training (batch 64): forward, input and weight gradients.
                xt = xm[:64].clone().requires_grad_()
                wt17, wt7 = wm17.clone().requires_grad_(), wm7.clone().requires_grad_()
                train17 = _fwd_bwd(lambda t, w: lo.depthwise_conv2d(t, w), xt, wt17)
                yield f"mma dw 17x17 64x{c}x{hw}x{hw} bf16 fwd+bwd (mma)", _with_env(train17, LEARNABLE_OPS_DEPTHWISE_MMA="1")
                yield f"mma dw 17x17 64x{c}x{hw}x{hw} bf16 fwd+bwd (direct)", _with_env(train17, LEARNABLE_OPS_DEPTHWISE_MMA="0")
                yield f"mma dw 7x7 64x{c}x{hw}x{hw} bf16 fwd+bwd (cuDNN)", _fwd_bwd(
                    lambda t, w, c=c: F.conv2d(t, w, padding=3, groups=c), xt, wt7)
                yield f"mma dw 7x7 128x{c}x{hw}x{hw} bf16 (cuDNN channels_last)", lambda t=xm.contiguous(
                    memory_format=torch.channels_last), w=wm7, c=c: F.conv2d(t, w, padding=3, groups=c)
    for c, hw in ((768, 7), (384, 14)):
        xs = torch.randn(64, c, hw, hw, device=dev, requires_grad=True)
        w17 = torch.randn(c, 1, 17, 17, device=dev, requires_grad=True)
        w7 = torch.randn(c, 1, 7, 7, device=dev, requires_grad=True)
        yield f"depthwise 17x17 {c}x{hw}x{hw} fwd+bwd (ours)", _fwd_bwd(lambda t, w: lo.depthwise_conv2d(t, w), xs, w17)
        yield f"depthwise 7x7 {c}x{hw}x{hw} fwd+bwd (cuDNN)", _fwd_bwd(
            lambda t, w, c=c: F.conv2d(t, w, padding=3, groups=c), xs, w7)
    for version in ("v0", "max", "v1"):
        w = torch.randn(96, 1, 34, device=dev, requires_grad=True)
        P = (torch.randn(2, 96, 1, 34, device=dev) * 3).requires_grad_()
        SIG = (torch.rand(2, 96, 1, 34, device=dev) * 0.5).requires_grad_()
        sig = SIG if version in ("max", "gauss") else None
        yield f"dcls_construct {version} dw D=17 Kc=34 fwd+bwd", _fwd_bwd(
            lambda a, b, c=sig: lo.dcls_construct(a, b, c, (17, 17), version), w, P)


def convnext_workloads():
    """timm convnext_tiny and its DCLS version (gauss, 34 taps in 17x17) in bf16 autocast
    inference at batch 128, as benchmarks/convnext.py runs them: where the gap goes."""
    try:
        import timm
    except ImportError:
        return
    from learnable_ops.benchmarks.convnext import _inference, dcls_convnext

    base = timm.create_model("convnext_tiny", pretrained=False).to(dev)
    x = torch.randn(128, 3, 224, 224, device=dev)
    yield "convnext bf16 inference b128 baseline", _inference(base, x, torch.bfloat16)
    yield "convnext bf16 inference b128 dcls gauss", _inference(dcls_convnext(base, "gauss"), x, torch.bfloat16)


def main(names):
    # As in the benchmarks (learnable-ops bench): cuDNN picks its algorithms by heuristics.
    torch.backends.cudnn.benchmark = False
    import itertools

    for name, run in itertools.chain(workloads(), convnext_workloads()):
        if names and not any(n in name for n in names):
            continue
        for _ in range(3):
            run()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        n = 20
        start.record()
        for _ in range(n):
            run()
        end.record()
        torch.cuda.synchronize()
        ms = start.elapsed_time(end) / n
        # Peak memory of one more call above what was allocated before it.
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                run()
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        print(f"\n### {name}: {ms:.3f} ms/iter, {len(kernels) / 5:.0f} kernels/iter, peak {peak_mib:.0f} MiB")
        # Kernels only, per iteration: self device time (us) and calls.
        rows = []
        for e in prof.key_averages():
            t = getattr(e, "self_device_time_total", None)
            if t is None:
                t = getattr(e, "self_cuda_time_total", 0)
            if t > 0 and getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA:
                rows.append((t / 5, e.count / 5, e.key))
        if not rows:
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=10, max_name_column_width=70))
        for t, c, key in sorted(rows, reverse=True)[: 24 if "convnext" in name else 8]:
            print(f"  {t:9.1f} us  x{c:g}  {key[:110]}")


if __name__ == "__main__":
    main(sys.argv[1:])
