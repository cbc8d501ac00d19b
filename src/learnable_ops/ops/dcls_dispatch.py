"""Which implementation a depthwise DCLS layer should run: ``choose_method``.

Three paths compute the same function (they differ only by float rounding):

* ``'sparse'``: :func:`learnable_ops.dcls_sparse_depthwise`, tap by tap, no dense
  kernel (bilinear versions ``v0``/``v1`` only);
* ``'dense'``: ``dcls_construct`` + :func:`learnable_ops.depthwise_conv2d` (the
  native large-kernel depthwise conv);
* ``'construct'``: ``dcls_construct`` + ``torch.nn.functional.conv{1,2,3}d``
  (ATen/oneDNN on CPU, cuDNN on CUDA); the only path for non-depthwise layers.

The thresholds below are measurements (``benchmarks/depthwise.py``), documented
in ``docs/depthwise.md``.
"""

from __future__ import annotations


import torch

METHODS = ("auto", "dense", "sparse", "construct")
"""Values of the DCLS modules' ``method`` argument."""

SPARSE_TAP_RATIO = {"cpu": 1.0, "cuda": 0.0}
"""The sparse path is chosen when ``Kc * 2^n <= ratio * prod(D)``.

CPU: the sparse and the dense path run the same vectorised tap loop, so their
cost follows the number of taps (``Kc * 2^n`` corners against ``prod(D)``
cells), and the sparse one skips the construction as well. Measured (2 shared
threads, 8x96x56x56, D=17, fwd+bwd, conv alone): Kc=34 (136 corners) 0.52x the
dense conv; Kc=72 (288 corners, as many as the 289 cells) 0.91x. Ratio 1 is
therefore on the safe side.

CUDA (H100, torch 2.11, 64 images, fwd+bwd, 34 taps in 17x17 v0 against our
dense 17x17): a first run gave 0.75x at 192x28x28, but 1.64x at 384x14x14 and
1.95x at 768x7x7; the later run of docs/performance.md 0.87x at 96x56x56,
1.25x at 192x28x28, 2.6x at 384x14x14 and 7x7. The sparse kernel reads shared
memory once per FMA, the dense one keeps a register window. After the dense
kernels got faster (a register window of 7 rows, no bank conflicts in the weight
gradient), the 2026-11-23 run had sparse at 1.45x dense at 96x56x56, 2.34x at
192x28x28, 3.89x at 384x14x14 and 2.45x at 768x7x7, and ConvNeXt-T-dcls v0's bf16
training step at 4.04x the baseline with sparse against 1.57x for gauss (dense).
So 'auto' never picks sparse on CUDA (ratio 0); ``method='sparse'`` still forces it.
"""

SPARSE_MIN_PLANE = {"cpu": 0, "cuda": 56 * 56}
"""The sparse path also needs an input plane (H*W) of at least this many pixels.

CUDA: moot while :data:`SPARSE_TAP_RATIO` is 0 there (kept for a faster sparse
kernel). CPU: the ratio held from 7x7 to 56x56 planes.
"""

MIN_DENSE_AREA = {"cpu": 1, "cuda": 49}
"""Below this kernel area a depthwise layer uses ``'construct'`` (the framework conv).

CPU: ours is faster forward+backward from 5x5 on (8x96x56x56, ratio ours/torch on
2 threads, session 11: 3x3 1.07x, 5x5 0.21x, 7x7 0.19x; 17x17 0.10x at 32x96x56x56;
timed on one thread before, 3x3 read 0.45x), because ATen's depthwise backward is
slow; oneDNN's forward alone is 1.3x faster than ours at 5x5 and 7x7 (NCHW). So
'dense' always, 3x3 being a tie.
CUDA (H100, torch 2.11, fwd+bwd, 64 images): our 7x7 is 0.54-0.65x cuDNN's 7x7
and our 17x17 0.35-0.50x cuDNN's 17x17 at the four ConvNeXt-T stage shapes;
kernels under 7x7 were not measured, so they stay on cuDNN.
"""


CPU_CHANNELS_LAST_INFERENCE = "construct"
"""The path of a dense depthwise layer on the CPU for channels_last input without a gradient.
oneDNN's channels_last depthwise forward beat ours (cpp/depthwise_nhwc.cpp) at every shape
measured (2 threads, torch 2.13, 8 images, float32, 'same'): 3x3 to 17x17 at 96x56x56 by
1.3-3.3x, 17x17 at 384x14x14 and 768x7x7 by 1.9-2.6x; its NCHW forward is 8-15x slower than
ours at 17x17, and its backward (either layout) 1.6-7x slower than ours from 7x7 on, so NCHW
input and training keep 'dense'."""


def is_depthwise(in_channels: int, out_channels: int, groups: int) -> bool:
    """``groups == in_channels == out_channels``."""
    return groups == in_channels == out_channels


def choose_method(
    kernel_count: int,
    dilated_kernel_size,
    in_channels: int,
    out_channels: int,
    groups: int,
    version: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    spatial_size=None,
    channels_last: bool = False,
    needs_grad: bool = True,
) -> str:
    """The fastest correct path for a DCLS layer: ``'sparse'``, ``'dense'`` or ``'construct'``.

    Args:
        kernel_count: ``Kc``, taps per kernel.
        dilated_kernel_size: ``D``, a tuple of n ints.
        in_channels: the layer's input channels.
        out_channels: the layer's output channels.
        groups: the layer's groups.
        version: ``'v0'``, ``'v1'``, ``'max'`` or ``'gauss'``.
        device: where the layer runs.
        dtype: the compute dtype (all three paths accumulate in fp32 for
            float16/bfloat16; it does not change the choice today).
        spatial_size: the input's spatial size; the sparse path needs a plane of
            at least :data:`SPARSE_MIN_PLANE` pixels (it loses on small planes on CUDA).
        channels_last: whether the input is channels_last (and not NCHW-contiguous).
        needs_grad: whether the call records a graph (training). On the CPU a dense
            layer on channels_last input without one takes
            :data:`CPU_CHANNELS_LAST_INFERENCE`.

    Returns:
        ``'sparse'`` for a depthwise v0/v1 layer with few enough corner taps,
        ``'dense'`` for other depthwise layers with a kernel of at least
        :data:`MIN_DENSE_AREA` cells, and ``'construct'`` otherwise
        (non-depthwise layers, 3D, small kernels).
    """
    # Plain loops, no generator expressions: this runs inside torch.compile'd forwards,
    # where the spatial sizes may be symbolic.
    n = len(dilated_kernel_size)
    kind = torch.device(device).type
    kind = kind if kind in SPARSE_TAP_RATIO else "cuda"
    if not is_depthwise(in_channels, out_channels, groups) or n not in (1, 2):
        return "construct"
    area = 1
    for d in dilated_kernel_size:
        area *= d
    big_plane = True
    if spatial_size is not None:
        plane = 1
        for v in spatial_size:
            plane *= v
        big_plane = plane >= SPARSE_MIN_PLANE[kind]
    if version in ("v0", "v1") and big_plane and kernel_count * 2**n <= SPARSE_TAP_RATIO[kind] * area:
        return "sparse"
    if area >= MIN_DENSE_AREA[kind]:
        if kind == "cpu" and channels_last and not needs_grad:
            return CPU_CHANNELS_LAST_INFERENCE
        return "dense"
    return "construct"
