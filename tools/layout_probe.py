"""Times DiffConv2d's memory-bound passes against plain copies and transposes on one
CUDA device, to tell whether our kernels or the memory system set their speed.

    python3 tools/layout_probe.py            # CUDA-event timings (median of 50)
    ncu --clock-control none --section SpeedOfLight --section MemoryWorkloadAnalysis \\
        --section Occupancy --section LaunchStats --section WarpStateStats \\
        -k regex:"pad_layout|pad_poly|nchwToNhwc|copy|Copy" python3 tools/layout_probe.py --once

Each row: the pass, its time, and the bytes it must move (read + write) over that time.
"""

from __future__ import annotations

import argparse
import os

import torch

import learnable_ops as lo
from gpu_profile import _with_env  # tools/ is the script's directory, so on sys.path


def passes(n: int, c: int, h: int, w: int, k: int):
    x = torch.randn(n, c, h, w, device="cuda")
    p = k // 2
    layout = torch.ops.learnable_ops.diff_conv2d_pad_layout.default
    xp_cl = layout(x, [p, p], [k - 1, k - 1], [1, 1], False, True)
    xp = lo.pad(x, (p, p, p, p), mode="polynomial", order=k - 1)
    y_cl = x.contiguous(memory_format=torch.channels_last)
    nbytes = x.numel() * x.element_size()
    pbytes = xp.numel() * xp.element_size()
    yield "copy (x.clone)", lambda: x.clone(), 2 * nbytes
    yield "transpose NCHW->NHWC (torch)", lambda: x.contiguous(memory_format=torch.channels_last), 2 * nbytes
    yield "transpose NHWC->NCHW (torch)", lambda: y_cl.contiguous(), 2 * nbytes
    yield "transpose NHWC->NCHW (layout op)", lambda: layout(y_cl, [0, 0], [0, 0], [1, 1], False, False), 2 * nbytes
    yield "transpose NCHW->NHWC (layout op)", lambda: layout(x, [0, 0], [0, 0], [1, 1], False, True), 2 * nbytes
    yield f"pad K={k} NCHW->NHWC (layout op)", lambda: layout(x, [p, p], [k - 1, k - 1], [1, 1], False, True), (
        nbytes + pbytes)
    yield f"fold K={k} NHWC->NCHW (layout op)", lambda: layout(xp_cl, [p, p], [k - 1, k - 1], [1, 1], True, False), (
        nbytes + pbytes)
    yield f"pad K={k} NCHW (pad op)", lambda: lo.pad(x, (p, p, p, p), mode="polynomial", order=k - 1), (
        nbytes + pbytes)
    yield f"zero pad K={k} NCHW (F.pad)", lambda: torch.nn.functional.pad(x, (p, p, p, p)), nbytes + pbytes
    yield f"pad K={k} NCHW (pad op, box + ring kernels)", _with_env(
        lambda: lo.pad(x, (p, p, p, p), mode="polynomial", order=k - 1), LEARNABLE_OPS_PAD_POLY_SPLIT="1"), (
        nbytes + pbytes)
    # The pad's interior alone, as torch's strided copy into a view of a preallocated output:
    # how fast a padded-interior copy can run, without a ring.
    out = torch.empty_like(xp)
    yield f"interior copy K={k} (copy_ into a view)", lambda: out[:, :, p:-p, p:-p].copy_(x), 2 * nbytes
    # The same pad with rows a multiple of 32 floats (input W - 2p): row alignment's share.
    xa = x[..., : w - 2 * p].contiguous()
    yield f"pad K={k} NCHW (pad op), aligned rows", lambda: lo.pad(xa, (p, p, p, p), mode="polynomial", order=k - 1), (
        2 * xa.numel() * xa.element_size())


def time_ms(fn, reps: int = 50) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--once", action="store_true", help="one call of each pass (for ncu)")
    ap.add_argument("--shape", default="16,64,128,128")
    args = ap.parse_args()
    n, c, h, w = (int(v) for v in args.shape.split(","))
    print(torch.cuda.get_device_name(), "torch", torch.__version__, "shape", (n, c, h, w), "fp32",
          "LAYOUT_ROWS", os.environ.get("LEARNABLE_OPS_DIFFCONV_LAYOUT_ROWS", "default"))
    for k in (3, 7):
        for name, fn, moved in passes(n, c, h, w, k):
            if args.once:
                fn()
                torch.cuda.synchronize()
                continue
            ms = time_ms(fn)
            print(f"  {name:38s} {ms * 1e3:8.1f} us  {moved / ms / 1e9:6.2f} TB/s")


if __name__ == "__main__":
    main()
