"""Kernel-level profiles of the workloads whose GPU targets are missed.

    python tools/gpu_profile.py [name ...]   # writes tables to stdout

For each workload: wall time per iteration (CUDA events), the number of kernel launches
per iteration, and torch.profiler's table of the kernels sorted by CUDA time.
"""
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


def workloads():
    x = torch.randn(64, 96, 56, 56, device=dev, requires_grad=True)
    yield "pad zeros fwd+bwd (ours)", _fwd_bwd(lambda t: lo.pad(t, (3, 3, 3, 3), "zeros"), x)
    yield "pad zeros fwd+bwd (F.pad)", _fwd_bwd(lambda t: F.pad(t, (3, 3, 3, 3)), x)
    yield "pad reflect fwd+bwd (ours)", _fwd_bwd(lambda t: lo.pad(t, (3, 3, 3, 3), "reflect"), x)
    yield "pad reflect fwd+bwd (F.pad)", _fwd_bwd(lambda t: F.pad(t, (3, 3, 3, 3), mode="reflect"), x)
    xb = torch.randn(64, 96, 56, 56, device=dev, dtype=torch.bfloat16, requires_grad=True)
    s = (torch.rand(96, 2, device=dev) * 6 - 3).requires_grad_()
    xf = torch.randn(64, 96, 56, 56, device=dev, requires_grad=True)
    yield "shift sparse zeros fp32 fwd+bwd", _fwd_bwd(lambda t, w: lo.shift(t, w, "zeros", "sparse"), xf, s)
    yield "shift active zeros fp32 fwd+bwd", _fwd_bwd(lambda t, w: lo.shift(t, w, "zeros", "active"), xf, s)
    yield "shift sparse zeros bf16 fwd", lambda: lo.shift(xb.detach(), s.detach(), "zeros", "sparse")
    yield "shift sparse zeros bf16 fwd+bwd", _fwd_bwd(lambda t, w: lo.shift(t, w, "zeros", "sparse"), xb, s)
    yield "shift active reflect bf16 fwd+bwd", _fwd_bwd(lambda t, w: lo.shift(t, w, "reflect", "active"), xb, s)
    wconv = torch.randn(96, 1, 3, 3, device=dev, dtype=torch.bfloat16, requires_grad=True)
    yield "dw3x3 conv bf16 fwd+bwd", _fwd_bwd(lambda t, w: F.conv2d(t, w, padding=1, groups=96), xb, wconv)
    xd = torch.randn(16, 64, 128, 128, device=dev, requires_grad=True)
    for k in (3, 5):
        wd = torch.randn(64, 64, k, k, device=dev, requires_grad=True)
        yield f"diffconv dense K={k} fwd+bwd", _fwd_bwd(lambda t, w: lo.diff_conv2d(t, w), xd, wd)
        yield f"conv same K={k} fwd+bwd", _fwd_bwd(lambda t, w: F.conv2d(t, w, padding=k // 2), xd, wd)
        yield f"poly pad + valid K={k} fwd+bwd", _fwd_bwd(
            lambda t, w: F.conv2d(lo.pad(t, (k // 2,) * 4, "polynomial", order=k - 1), w), xd, wd)
        wdw = torch.randn(64, 1, k, k, device=dev, requires_grad=True)
        yield f"diffconv depthwise K={k} fwd+bwd", _fwd_bwd(lambda t, w: lo.diff_conv2d(t, w, groups=64), xd, wdw)
        yield f"conv same depthwise K={k} fwd+bwd", _fwd_bwd(
            lambda t, w: F.conv2d(t, w, padding=k // 2, groups=64), xd, wdw)
    for dtype in (torch.float32, torch.bfloat16):
        xs = torch.randn(128, 96, 56, 56, device=dev, dtype=dtype).to(memory_format=torch.channels_last)
        w7 = torch.randn(96, 1, 7, 7, device=dev, dtype=dtype)
        w17 = torch.randn(96, 1, 17, 17, device=dev, dtype=dtype)
        yield f"inference dw 7x7 cuDNN channels_last 128x96x56x56 {dtype}", lambda t=xs, w=w7: F.conv2d(t, w, padding=3, groups=96)
        yield f"inference dw 7x7 cuDNN NCHW 128x96x56x56 {dtype}", lambda t=xs.contiguous(), w=w7: F.conv2d(t, w, padding=3, groups=96)
        yield f"inference dw 17x17 ours channels_last 128x96x56x56 {dtype}", lambda t=xs, w=w17: lo.depthwise_conv2d(t, w)
        yield f"inference dw 17x17 ours NCHW 128x96x56x56 {dtype}", lambda t=xs.contiguous(), w=w17: lo.depthwise_conv2d(t, w)
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


def main(names):
    torch.backends.cudnn.benchmark = True
    for name, run in workloads():
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
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                run()
            torch.cuda.synchronize()
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        print(f"\n### {name}: {ms:.3f} ms/iter, {len(kernels) / 5:.0f} kernels/iter")
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=10, max_name_column_width=70)
        print("\n".join(line[:190] for line in table.splitlines()))


if __name__ == "__main__":
    main(sys.argv[1:])
