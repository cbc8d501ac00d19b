"""Regenerates the figures of the docs pages: python docs/make_figures.py"""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import learnable_ops as lo  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


def padding_modes(path):
    x = torch.arange(5.0).view(1, 1, 5)
    fig, axes = plt.subplots(len(lo.PAD_MODES), 1, figsize=(7, 6), sharex=True)
    coords = torch.arange(-7, 8)
    colors = ["tab:blue" if 0 <= i < 5 else "tab:orange" for i in coords.tolist()]
    for ax, mode in zip(axes, lo.PAD_MODES):
        y = lo.pad(x, (7, 3), mode).view(-1)
        ax.bar(coords, y, color=colors)
        for c, v in zip(coords.tolist(), y.tolist()):
            ax.text(c, v + 0.1, f"{v:g}", ha="center", fontsize=7)
        ax.set_ylim(0, 5.2)
        ax.set_ylabel(mode, rotation=0, ha="right", va="center")
        ax.set_yticks([])
    axes[-1].set_xlabel("padded coordinate p (the input x = 0..4 is blue, padding orange)")
    fig.suptitle("learnable_ops.pad(arange(5), (7, 3), mode)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    padding_modes(HERE / "img" / "padding_modes.png")
