"""The demo's figures (matplotlib, Agg backend, PNG).

* ``training_curves.png``: test accuracy per epoch of every variant;
* ``dcls_kernels.png``: per DCLS layer, the constructed kernel of a few
  channels with their tap positions, at initialisation and after training,
  and the tap positions of all channels;
* ``shift_histogram.png``: the learned shifts of the sparse and active shift
  variants, against their initial distribution;
* ``diffconv_boundary.png``: DiffConv2d's error at the boundary of a smooth
  field, against zero, reflect and symmetric padding (the exact result is the
  convolution of the field sampled beyond the image).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CHANNELS_SHOWN = 3


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(results, path: str) -> str:
    """Test accuracy per epoch, one line per variant."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        epochs = np.arange(1, len(r.test_accuracy_per_epoch) + 1)
        ax.plot(epochs, 100 * np.asarray(r.test_accuracy_per_epoch), marker="o", ms=3, label=r.name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Same network, five spatial operators")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _dcls_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    from learnable_ops.nn import Dcls2d

    return [(name, m) for name, m in model.named_modules() if isinstance(m, Dcls2d)]


@torch.no_grad()
def _dcls_kernel_and_taps(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense kernel (Co, D0, D1), tap centres (Co, Kc, 2) in grid cells, tap weights (Co, Kc)."""
    kernel = layer.construct_kernel().detach().double()[:, 0].numpy()
    dilated = layer.dilated_kernel_size
    centres = layer.P.detach().double()[:, :, 0].permute(1, 2, 0).expand(layer.out_channels, -1, -1).numpy()
    centres = centres + np.array([d // 2 for d in dilated])
    return kernel, centres, layer.weight.detach().double()[:, 0].numpy()


def dcls_kernels(initial: nn.Module, trained: nn.Module, path: str) -> str:
    """Per DCLS layer: kernels of a few channels with their taps (init, trained); all taps (init, trained)."""
    plt = _pyplot()
    pairs = list(zip(_dcls_layers(initial), _dcls_layers(trained)))
    cols = 2 * CHANNELS_SHOWN + 2
    fig, axes = plt.subplots(len(pairs), cols, figsize=(1.9 * cols, 2.0 * len(pairs) + 0.6), squeeze=False)
    for row, ((name, before), (_, after)) in enumerate(pairs):
        k0, c0, w0 = _dcls_kernel_and_taps(before)
        k1, c1, w1 = _dcls_kernel_and_taps(after)
        for j in range(CHANNELS_SHOWN):
            for t, (kernel, centres, weights, when) in enumerate(((k0, c0, w0, "init"), (k1, c1, w1, "trained"))):
                ax = axes[row, 2 * j + t]
                bound = np.abs(kernel[j]).max() or 1.0
                ax.imshow(kernel[j], cmap="RdBu_r", vmin=-bound, vmax=bound)
                ax.scatter(centres[j, :, 1], centres[j, :, 0], s=12 + 60 * np.abs(weights[j]) / (np.abs(weights[j]).max() or 1),
                           facecolors="none", edgecolors="k", linewidths=0.8)
                ax.set_title(f"ch {j}, {when}", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
        for t, (centres, when) in enumerate(((c0, "init"), (c1, "trained"))):
            ax = axes[row, 2 * CHANNELS_SHOWN + t]
            shape = k0.shape[1:]
            ax.scatter(centres[..., 1].ravel(), centres[..., 0].ravel(), s=3, alpha=0.5)
            ax.set_xlim(-0.5, shape[1] - 0.5)
            ax.set_ylim(shape[0] - 0.5, -0.5)
            ax.set_aspect("equal")
            ax.set_title(f"all taps, {when}", fontsize=8)
            ax.grid(alpha=0.3)
        axes[row, 0].set_ylabel(f"{name}\n{after.kernel_count} taps, {after.version}", fontsize=8)
    fig.suptitle("DCLS: constructed kernels (colour) and tap positions (circles, size ~ |weight|)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shifts(model: nn.Module) -> np.ndarray:
    from learnable_ops.nn import Shift2d

    values = [m.weight.detach().double().cpu().numpy() for m in model.modules() if isinstance(m, Shift2d)]
    return np.concatenate(values) if values else np.zeros((0, 2))


def shift_histogram(models: dict, path: str) -> str:
    """Per shift variant: histogram of the shifts (initial and learned), and each channel's move."""
    plt = _pyplot()
    names = [n for n in ("sparse-shift", "active-shift") if n in models]
    fig, axes = plt.subplots(len(names), 2, figsize=(11, 4.2 * len(names)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.6, 1]})
    for (hist_ax, move_ax), name in zip(axes, names):
        initial, trained = (_shifts(m) for m in models[name])
        span = math.ceil(max(np.abs(trained).max(), np.abs(initial).max(), 1.0))
        bins = np.arange(-span - 0.5, span + 0.51, 0.125)
        hist_ax.hist(initial.ravel(), bins=bins, histtype="step", color="0.3", lw=1.2, label="initial")
        hist_ax.hist(trained.ravel(), bins=bins, alpha=0.6, color="tab:blue", label="learned")
        moved = np.abs(trained - initial)
        hist_ax.set_title(
            f"{name}: {trained.size} shifts ({len(trained)} channels x 2 axes); "
            f"mean |move| {moved.mean():.2f}, max {moved.max():.2f} px",
            fontsize=9,
        )
        hist_ax.set_xlabel("shift s (pixels; out[i] = x(i - s))")
        hist_ax.set_ylabel("count")
        if name == "sparse-shift":
            for edge in np.arange(-span + 0.5, span, 1.0):
                hist_ax.axvline(edge, color="0.7", lw=0.6, ls=":")
            hist_ax.text(0.01, 0.97, "dotted: rounding boundaries\n(the forward uses round(s))",
                         transform=hist_ax.transAxes, va="top", fontsize=8, color="0.4")
        hist_ax.legend(fontsize=8, loc="upper right")
        for (y0, x0), (y1, x1) in zip(initial, trained):
            move_ax.plot([x0, x1], [y0, y1], color="0.75", lw=0.6, zorder=1)
        move_ax.scatter(initial[:, 1], initial[:, 0], s=6, color="0.5", label="initial", zorder=2)
        move_ax.scatter(trained[:, 1], trained[:, 0], s=8, color="tab:blue", label="learned", zorder=3)
        move_ax.set_xlabel("column shift")
        move_ax.set_ylabel("row shift")
        move_ax.set_aspect("equal")
        move_ax.set_title("per channel: initial -> learned", fontsize=9)
        move_ax.grid(alpha=0.3)
        move_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def smooth_field(size: int, margin: int) -> torch.Tensor:
    """A smooth field on ``size + 2 margin`` pixels: the image plus the true values beyond its edges."""
    coords = (torch.arange(size + 2 * margin, dtype=torch.float64) - margin) / size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    field = torch.sin(2.5 * xx + 0.6) * torch.cos(1.8 * yy - 0.3) + 0.6 * xx * yy - 0.4 * yy
    return field[None, None]


def boundary_errors(kernel_size: int = 5, size: int = 32, noise: float = 0.0, seed: int = 0) -> dict[str, torch.Tensor]:
    """Absolute error ``(size, size)`` of each boundary treatment against the exact convolution.

    The exact result convolves the field sampled beyond the image (a valid
    convolution of the extended field); each method sees only the image.
    """
    import learnable_ops as lo

    p = kernel_size // 2
    generator = torch.Generator().manual_seed(seed)
    kernel = torch.randn(1, 1, kernel_size, kernel_size, generator=generator, dtype=torch.float64)
    extended = smooth_field(size, p)
    exact = F.conv2d(extended, kernel)
    image = extended[..., p:-p, p:-p] + noise * torch.randn(1, 1, size, size, generator=generator, dtype=torch.float64)
    outputs = {
        "DiffConv2d": lo.diff_conv2d(image, kernel),
        "zeros": F.conv2d(image, kernel, padding=p),
        "reflect": F.conv2d(lo.pad(image, [p] * 4, "reflect"), kernel),
        "symmetric": F.conv2d(lo.pad(image, [p] * 4, "symmetric"), kernel),
    }
    return {name: (out - exact).abs()[0, 0] for name, out in outputs.items()}


def _by_distance(error: torch.Tensor) -> np.ndarray:
    """Maximum error over the pixels at each distance from the nearest edge."""
    n = error.shape[0]
    idx = torch.arange(n)
    edge = torch.minimum(idx, n - 1 - idx)
    distance = torch.minimum(edge[:, None], edge[None, :])
    return np.array([error[distance == d].max().item() for d in range(int(distance.max()) + 1)])


def diffconv_boundary(path: str, kernel_size: int = 5, size: int = 32) -> str:
    """Error maps (log scale) of the four boundary treatments and the error against the distance to the edge."""
    plt = _pyplot()
    from matplotlib.colors import LogNorm

    errors = boundary_errors(kernel_size, size)
    noisy = boundary_errors(kernel_size, size, noise=1e-2)
    floor = 1e-16  # exact zeros (the interior) are drawn at this value on log axes
    vmax = max(e.max().item() for e in errors.values())
    fig = plt.figure(figsize=(13, 8.5))
    grid = fig.add_gridspec(2, 4, height_ratios=[1, 1.15], hspace=0.35, wspace=0.3)
    maps = [fig.add_subplot(grid[0, k]) for k in range(4)]
    for ax, (name, error) in zip(maps, errors.items()):
        im = ax.imshow(error.clamp_min(floor).numpy(), norm=LogNorm(vmin=1e-12, vmax=vmax), cmap="magma")
        ax.set_title(f"{name}\nmax |error| {error.max().item():.1e}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=maps, shrink=0.85, label="|output - exact| (interior: exactly 0)")
    profiles = (fig.add_subplot(grid[1, :2]), fig.add_subplot(grid[1, 2:]))
    for ax, errs, title in ((profiles[0], errors, "smooth field"), (profiles[1], noisy, "smooth field + 1% noise (error against the noise-free result)")):
        for name, error in errs.items():
            ax.semilogy(np.maximum(_by_distance(error), floor), marker="o", ms=3, label=name)
        ax.axvline(kernel_size // 2 - 0.5, color="0.5", ls=":", lw=1)
        ax.text(kernel_size // 2 - 0.4, 0.97, " boundary | interior", transform=ax.get_xaxis_transform(),
                va="top", fontsize=8, color="0.4")
        ax.set_xlabel("distance from the nearest edge (pixels)")
        ax.set_ylabel("max |error|")
        ax.set_title(f"{title}, {kernel_size}x{kernel_size} random kernel", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"Boundary error of a 'same' {kernel_size}x{kernel_size} convolution of a {size}x{size} image of a smooth "
        "field\nDiffConv2d (polynomial extrapolation) against zero, reflect and symmetric padding; "
        "exact = the field convolved beyond the image",
        fontsize=11,
    )
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def write_all(models: dict, results, config) -> list[str]:
    """Writes every figure that the trained variants allow; returns their paths."""
    out = config.out
    paths = [training_curves(results, os.path.join(out, "training_curves.png"))]
    if "dcls" in models:
        paths.append(dcls_kernels(*models["dcls"], os.path.join(out, "dcls_kernels.png")))
    if "sparse-shift" in models or "active-shift" in models:
        paths.append(shift_histogram(models, os.path.join(out, "shift_histogram.png")))
    if "diffconv" in models:
        paths.append(diffconv_boundary(os.path.join(out, "diffconv_boundary.png"), config.kernel_size))
    return paths
