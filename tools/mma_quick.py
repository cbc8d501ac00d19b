"""Quick timing of the tensor-core depthwise kernels (LEARNABLE_OPS_DEPTHWISE_MMA=1) against the
direct kernels and cuDNN's 7x7, at ConvNeXt-T's four stage shapes in bfloat16, for a short
device run (a few seconds). Per row: milliseconds per call (CUDA events, median of 5 x 10).

    python tools/mma_quick.py
"""
import statistics

import torch
import torch.nn.functional as F
from gpu_profile import _with_env  # tools/ is this script's directory

import learnable_ops as lo


def time_ms(fn, mma=None):
    """fn's time per call; with LEARNABLE_OPS_DEPTHWISE_MMA=`mma` set for the calls if given."""
    if mma is not None:
        fn = _with_env(fn, LEARNABLE_OPS_DEPTHWISE_MMA=mma)
    for _ in range(3):
        fn()
    samples = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            fn()
        end.record()
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) / 10)
    return statistics.median(samples)


def main():
    torch.backends.cudnn.benchmark = False
    dt = torch.bfloat16
    print(torch.cuda.get_device_name(), torch.__version__)
    for c, hw in ((96, 56), (192, 28), (384, 14), (768, 7)):
        x = torch.randn(128, c, hw, hw, device="cuda", dtype=dt)
        w17 = torch.randn(c, 1, 17, 17, device="cuda", dtype=dt)
        w7 = torch.randn(c, 1, 7, 7, device="cuda", dtype=dt)
        fwd = lambda: lo.depthwise_conv2d(x, w17)  # noqa: E731
        mma, direct = time_ms(fwd, "1"), time_ms(fwd, "0")
        cudnn7 = time_ms(lambda: F.conv2d(x, w7, padding=3, groups=c))
        xt = x[:64].clone().requires_grad_()
        wt = w17.clone().requires_grad_()
        wt7 = w7.clone().requires_grad_()
        g = torch.randn(64, c, hw, hw, device="cuda", dtype=dt)
        train = lambda: torch.autograd.grad(lo.depthwise_conv2d(xt, wt), (xt, wt), g)  # noqa: E731
        tmma, tdirect = time_ms(train, "1"), time_ms(train, "0")
        tcudnn7 = time_ms(lambda: torch.autograd.grad(F.conv2d(xt, wt7, padding=3, groups=c), (xt, wt7), g))
        print(f"{c}x{hw}x{hw} bf16 fwd b128: mma {mma:.3f} direct {direct:.3f} cuDNN7x7 {cudnn7:.3f} ms | "
              f"fwd+bwd b64: mma {tmma:.3f} direct {tdirect:.3f} cuDNN7x7 {tcudnn7:.3f} ms", flush=True)


if __name__ == "__main__":
    main()
