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
