"""``learnable-ops demo``: one small ConvNeXt-style network, five spatial operators, real data.

The network is trained five times, each time with a different operator in
place of its depthwise convolutions:

1. ``depthwise``: the baseline, ``nn.Conv2d(groups=C)``;
2. ``dcls``: DCLS, made from the baseline with :func:`learnable_ops.convert`;
3. ``sparse-shift``: the Sparse Shift Layer (rounded shifts);
4. ``active-shift``: the Active Shift Layer (interpolated shifts);
5. ``diffconv``: DiffConv2d, padding-free convolution.

Every variant starts from the same weights for the parts they share. The data
are scikit-learn's handwritten digits (``load_digits``, shipped with the
package), upsampled, unless ``--data`` names an image folder or a ``.npz``
file. Under ``torchrun`` the training is data-parallel (DDP, with gloo on CPU
and NCCL on CUDA).
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

VARIANTS = ("depthwise", "dcls", "sparse-shift", "active-shift", "diffconv")
"""The five variants, in the order they are trained and reported."""

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

WEIGHT_DECAY = 0.05


class DemoInputError(Exception):
    """Bad input to the demo (data path, device): the CLI prints it and exits with code 2."""


# --------------------------------------------------------------------------- data


@dataclass
class Dataset:
    """Images ``(N, C, S, S)`` normalised with the training statistics, and labels ``(N,)``."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    source: str

    @property
    def in_channels(self) -> int:
        return self.x_train.shape[1]


def _digits() -> tuple[np.ndarray, np.ndarray, list[str], str]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images[:, None] / 16.0, digits.target, [str(k) for k in range(10)], "scikit-learn load_digits"


def _from_npz(path: str) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    try:
        archive = np.load(path, allow_pickle=False)
        if not hasattr(archive, "files"):
            raise DemoInputError(f"--data {path}: a .npz archive with arrays 'x' and 'y' is expected, got one array")
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise DemoInputError(
                f"--data {path}: the archive has arrays {sorted(archive.files)} but needs 'x' (images) and 'y' (labels)"
            )
        x, y = archive["x"], archive["y"]
    except DemoInputError:
        raise
    except Exception as exc:  # numpy raises a zoo of types for corrupt archives
        raise DemoInputError(f"--data {path}: cannot read it as a .npz archive ({type(exc).__name__}: {exc})") from exc
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DemoInputError(
            f"--data {path}: 'x' must have shape (N, H, W), (N, C, H, W) or (N, H, W, C) with C 1 or 3, "
            f"got {x.shape}"
        )
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise DemoInputError(f"--data {path}: 'y' must have shape ({x.shape[0]},) to match 'x', got {y.shape}")
    if not np.issubdtype(x.dtype, np.number) or not (np.issubdtype(y.dtype, np.integer) or y.dtype.kind in "US"):
        raise DemoInputError(f"--data {path}: 'x' must be numeric and 'y' integer or string labels")
    classes, labels = np.unique(y, return_inverse=True)
    x = x.astype(np.float64)
    span = x.max() - x.min()
    x = (x - x.min()) / (span if span > 0 else 1.0)
    return x, labels, [str(c) for c in classes], f"{path} ({len(classes)} classes)"


def _from_folder(path: str, image_size: int) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d for d in os.listdir(path) if not d.startswith(".") and os.path.isdir(os.path.join(path, d)))
    if len(classes) < 2:
        raise DemoInputError(
            f"--data {path}: an image folder needs one subfolder per class (at least two), found {len(classes)}"
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = os.path.join(path, name)
        for entry in sorted(os.listdir(folder)):
            if not entry.startswith(".") and entry.lower().endswith(IMAGE_EXTENSIONS):
                files.append(os.path.join(folder, entry))
                labels.append(label)
    if not files:
        raise DemoInputError(f"--data {path}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class subfolders")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                images.append(image.convert("RGB").resize((image_size, image_size), Image.BILINEAR))
        except (UnidentifiedImageError, OSError) as exc:
            raise DemoInputError(f"--data {path}: cannot read image {file} ({exc})") from exc
    x = np.stack([np.asarray(image, dtype=np.float64) / 255.0 for image in images]).transpose(0, 3, 1, 2)
    if np.allclose(x, x[:, :1]):  # grey images: one channel
        x = x[:, :1]
    return x, np.asarray(labels), classes, f"{path} ({len(classes)} classes, {len(files)} images)"


def load_data(path: str | None, image_size: int, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Loads, resizes, splits (stratified where possible) and normalises the demo data.

    Args:
        path: ``None`` for scikit-learn's digits; a folder with one subfolder of
            images per class; or a ``.npz`` file with ``x`` (``(N, H, W)``,
            ``(N, C, H, W)`` or ``(N, H, W, C)``) and ``y`` (``(N,)`` labels).
        image_size: side ``S`` of the square images the network sees.
        seed: seed of the train/test split.
        test_fraction: share of the samples held out for testing.

    Raises:
        DemoInputError: the path is missing or unreadable, or its content has the wrong layout.
    """
    from sklearn.model_selection import train_test_split

    if path is None:
        x, y, classes, source = _digits()
    elif not os.path.exists(path):
        raise DemoInputError(f"--data {path}: no such file or directory")
    elif not os.access(path, os.R_OK):
        raise DemoInputError(f"--data {path}: permission denied")
    elif os.path.isdir(path):
        x, y, classes, source = _from_folder(path, image_size)
    elif path.lower().endswith(".npz"):
        x, y, classes, source = _from_npz(path)
    else:
        raise DemoInputError(f"--data {path}: expected a folder of class subfolders or a .npz file")
    counts = np.bincount(y)
    if len(y) < 10:
        raise DemoInputError(f"--data {path}: {len(y)} samples are too few to train and test on")
    stratify = y if counts.min() >= 2 else None
    idx_train, idx_test = train_test_split(
        np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=stratify
    )
    images = torch.as_tensor(x, dtype=torch.float32)
    if images.shape[-2:] != (image_size, image_size):
        images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    train = images[idx_train]
    mean, std = train.mean(dim=(0, 2, 3), keepdim=True), train.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    labels = torch.as_tensor(y, dtype=torch.long)
    return Dataset(
        (train - mean) / std, labels[idx_train], (images[idx_test] - mean) / std, labels[idx_test], classes, source
    )


# --------------------------------------------------------------------------- model


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an ``(N, C, H, W)`` tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Block(nn.Module):
    """ConvNeXt block: spatial mixing (``dwconv``), LayerNorm, inverted MLP, layer scale, residual."""

    def __init__(self, dim: int, kernel_size: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class TinyConvNeXt(nn.Module):
    """A two-stage ConvNeXt: patchify stem (stride 2), blocks, downsampling (stride 2), blocks, head.

    Args:
        in_channels: channels of the input images.
        num_classes: number of classes.
        dims: channels of the two stages.
        depths: blocks per stage.
        kernel_size: size of the depthwise convolutions (the layers the variants replace).
    """

    def __init__(self, in_channels=1, num_classes=10, dims=(24, 48), depths=(2, 2), kernel_size=5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, dims[0], 2, stride=2), LayerNorm2d(dims[0]))
        self.stage1 = nn.Sequential(*[Block(dims[0], kernel_size) for _ in range(depths[0])])
        self.downsample = nn.Sequential(LayerNorm2d(dims[0]), nn.Conv2d(dims[0], dims[1], 2, stride=2))
        self.stage2 = nn.Sequential(*[Block(dims[1], kernel_size) for _ in range(depths[1])])
        self.norm = nn.LayerNorm(dims[1])
        self.head = nn.Linear(dims[1], num_classes)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        # ConvNeXt's truncated normal; wider for the depthwise kernels, whose fan-in is only k*k.
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(module.weight, std=0.2 if getattr(module, "groups", 1) > 1 else 0.05)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage2(self.downsample(self.stage1(self.stem(x))))
        return self.head(self.norm(x.mean(dim=(2, 3))))


def parameter_count(model: nn.Module) -> int:
    """Number of trainable scalars (a parameter shared by several layers counts once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- variants


@dataclass
class DemoConfig:
    """Everything that defines a demo run (the CLI's options)."""

    data: str | None = None
    device: str = "cpu"
    epochs: int = 8
    out: str = "demo-out"
    variants: tuple[str, ...] = VARIANTS
    image_size: int = 24
    batch_size: int = 64
    lr: float = 4e-3
    kernel_size: int = 5
    dcls_kernel_count: int = 8
    dcls_dilated_kernel_size: int = 9
    seed: int = 0
    threads: int = 1
    progress: bool = True


def make_variant(name: str, base: nn.Module, config: DemoConfig) -> nn.Module:
    """A copy of ``base`` whose depthwise convolutions are replaced by the operator of ``name``."""
    import learnable_ops as lo
    from learnable_ops.convert import by_name

    model = copy.deepcopy(base)
    # The blocks' depthwise convs only: with one input channel the stem is "depthwise" too.
    blocks = by_name("*.dwconv")
    if name == "dcls":
        lo.convert(
            model,
            "dcls",
            filter_fn=blocks,
            kernel_count=config.dcls_kernel_count,
            dilated_kernel_size=config.dcls_dilated_kernel_size,
            version="gauss",
        )
    elif name in ("sparse-shift", "active-shift"):
        lo.convert(model, "shift", filter_fn=blocks, mode=name.split("-")[0])
    elif name == "diffconv":
        lo.convert(model, "diffconv", filter_fn=blocks)
    elif name != "depthwise":
        raise DemoInputError(f"unknown variant {name!r}; valid variants: {', '.join(VARIANTS)}")
    return model


@dataclass
class TrainingHooks:
    """What a variant adds to plain AdamW training: parameter groups, an extra loss, a post-step action."""

    param_groups: list[dict] | None = None
    extra_loss: Callable[[], torch.Tensor] | None = None
    after_step: Callable[[], None] | None = None


SHIFT_LR_SCALE = 10.0
"""Learning-rate factor of the shifts. Adam moves every parameter by about ``lr`` per step whatever its
scale, and a shift is measured in pixels: at the weights' rate it would move a fraction of a pixel."""


def training_hooks(name: str, model: nn.Module, lr: float, weight_decay: float) -> TrainingHooks:
    """The training recipe of each variant.

    * DCLS: positions and widths in their own parameter group (5x the learning
      rate, no weight decay) and positions clamped to the kernel after every step,
      as ConvNeXt-dcls trains them;
    * shifts: the shifts in their own group (:data:`SHIFT_LR_SCALE`, no weight
      decay), and the L1 sparsity term of the shift layers added to the loss.
    """
    if name == "dcls":
        from learnable_ops import dcls

        return TrainingHooks(
            param_groups=dcls.param_groups(model, lr=lr, weight_decay=weight_decay, position_lr_scale=5.0),
            after_step=lambda: dcls.clamp_positions(model),
        )
    if name in ("sparse-shift", "active-shift"):
        import learnable_ops as lo

        shifts = [m.weight for m in model.modules() if isinstance(m, lo.nn.Shift2d)]
        ids = {id(p) for p in shifts}
        rest = [p for p in model.parameters() if id(p) not in ids]
        return TrainingHooks(
            param_groups=[
                {"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": shifts, "lr": lr * SHIFT_LR_SCALE, "weight_decay": 0.0},
            ],
            extra_loss=lambda: lo.sparsity_loss(model),
        )
    return TrainingHooks()


# --------------------------------------------------------------------------- training


@dataclass
class VariantResult:
    name: str
    accuracy: float
    parameters: int
    seconds_per_epoch: float
    test_accuracy_per_epoch: list[float] = field(default_factory=list)
    train_loss_per_epoch: list[float] = field(default_factory=list)


@dataclass
class Distributed:
    """The process group a ``torchrun`` launch sets up (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> Distributed:
    """Joins the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Distributed(rank, world_size, local_rank)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(y), batch):
        logits = model(x[start : start + batch].to(device))
        correct += (logits.argmax(1).cpu() == y[start : start + batch]).sum().item()
    model.train(was_training)
    return correct / len(y)


def train_variant(
    name: str, model: nn.Module, data: Dataset, config: DemoConfig, dist_info: Distributed, device: torch.device
) -> VariantResult:
    """Trains ``model`` with AdamW and a cosine schedule; returns its test accuracy and timings."""
    from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
    from tqdm.auto import tqdm

    model.to(device)
    parameters = parameter_count(model)
    core = model
    if dist_info.active:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[dist_info.local_rank] if device.type == "cuda" else None
        )
    train_set = TensorDataset(data.x_train, data.y_train)
    generator = torch.Generator().manual_seed(config.seed)
    sampler = (
        DistributedSampler(train_set, dist_info.world_size, dist_info.rank, shuffle=True, seed=config.seed)
        if dist_info.active
        else None
    )
    loader = DataLoader(
        train_set,
        batch_size=max(1, config.batch_size // dist_info.world_size),
        shuffle=sampler is None,
        sampler=sampler,
        generator=generator,
        drop_last=len(train_set) > config.batch_size,
    )
    hooks = training_hooks(name, core, config.lr, WEIGHT_DECAY)
    optimizer = torch.optim.AdamW(
        core.parameters() if hooks.param_groups is None else hooks.param_groups,
        lr=config.lr, weight_decay=WEIGHT_DECAY,
    )
    steps = config.epochs * len(loader)
    warmup = max(1, steps // 10)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    result = VariantResult(name, 0.0, parameters, 0.0)
    bar = tqdm(total=steps, desc=f"{name:<13}", disable=not (config.progress and dist_info.is_main),
               mininterval=0.1 if sys.stderr.isatty() else 5.0)
    train_seconds = 0.0
    for epoch in range(config.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        start, loss_sum, batches = time.perf_counter(), 0.0, 0
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(model(xb), yb)
            total = loss if hooks.extra_loss is None else loss + hooks.extra_loss()
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            scheduler.step()
            if hooks.after_step is not None:
                hooks.after_step()
            loss_sum, batches = loss_sum + loss.item(), batches + 1
            bar.update(1)
            bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{loss_sum / batches:.3f}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - start
        accuracy = evaluate(core, data.x_test, data.y_test, device)
        result.test_accuracy_per_epoch.append(accuracy)
        result.train_loss_per_epoch.append(loss_sum / max(batches, 1))
        bar.set_postfix(epoch=f"{epoch + 1}/{config.epochs}", loss=f"{loss_sum / max(batches, 1):.3f}",
                        test_acc=f"{accuracy:.3f}")
    bar.close()
    result.accuracy = result.test_accuracy_per_epoch[-1] if config.epochs else evaluate(
        core, data.x_test, data.y_test, device)
    result.seconds_per_epoch = train_seconds / max(config.epochs, 1)
    return result


def results_table(results: list[VariantResult], classes: int) -> str:
    """The markdown table the demo prints: accuracy, parameters, time per epoch."""
    base = next((r for r in results if r.name == "depthwise"), None)
    lines = [
        "| variant | test accuracy | parameters | s / epoch | time vs depthwise |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        ratio = f"{r.seconds_per_epoch / base.seconds_per_epoch:.2f}x" if base and base.seconds_per_epoch else ""
        lines.append(
            f"| {r.name} | {100 * r.accuracy:.1f}% | {r.parameters:,} | {r.seconds_per_epoch:.2f} | {ratio} |"
        )
    lines.append(f"\nChance level: {100 / classes:.1f}% ({classes} classes).")
    return "\n".join(lines)


def run(config: DemoConfig) -> list[VariantResult]:
    """Runs the demo: trains every variant, prints the table, writes the figures and JSON/markdown.

    Returns:
        One :class:`VariantResult` per variant (on every rank).

    Raises:
        DemoInputError: bad ``--data`` or ``--device``.
    """
    if config.device != "cpu" and not config.device.startswith("cuda"):
        raise DemoInputError(f"--device must be cpu or cuda (or cuda:N), got {config.device!r}")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise DemoInputError("--device cuda was given but no CUDA device is available (torch.cuda.is_available() is False)")
    if config.epochs < 0:
        raise DemoInputError(f"--epochs must be >= 0, got {config.epochs}")
    smallest = 4 * config.kernel_size
    if config.image_size < smallest:
        raise DemoInputError(
            f"--image-size must be >= {smallest}: the second stage sees image_size / 4 pixels, which must "
            f"cover the {config.kernel_size}x{config.kernel_size} kernel; got {config.image_size}"
        )
    unknown = [v for v in config.variants if v not in VARIANTS]
    if unknown:
        raise DemoInputError(f"--variants: unknown {', '.join(unknown)}; valid variants: {', '.join(VARIANTS)}")
    if config.threads < 1:
        raise DemoInputError(f"--threads must be >= 1, got {config.threads}")
    start = time.perf_counter()
    data = load_data(config.data, config.image_size, config.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run(config, data, start)
    finally:
        torch.set_num_threads(threads)


def _run(config: DemoConfig, data: Dataset, start: float) -> list[VariantResult]:
    dist_info = setup_distributed(config.device)
    device = torch.device(f"cuda:{dist_info.local_rank}" if config.device.startswith("cuda") and dist_info.active
                          else config.device)
    say = print if dist_info.is_main else (lambda *a, **k: None)
    say(f"learnable-ops demo: {data.source}, {len(data.y_train)} train / {len(data.y_test)} test images of "
        f"{data.in_channels}x{config.image_size}x{config.image_size}; device {device}"
        + (f", DDP over {dist_info.world_size} processes" if dist_info.active else ""), flush=True)

    torch.manual_seed(config.seed)
    base = TinyConvNeXt(data.in_channels, len(data.classes), kernel_size=config.kernel_size)
    models, results = {}, []
    for name in config.variants:
        torch.manual_seed(config.seed + 1)  # replaced layers of every variant draw from the same stream
        model = make_variant(name, base, config)
        initial = copy.deepcopy(model)
        torch.manual_seed(config.seed + 2)
        results.append(train_variant(name, model, data, config, dist_info, device))
        models[name] = (initial, model.cpu())

    if dist_info.is_main:
        table = results_table(results, len(data.classes))
        print()
        print(table)
        os.makedirs(config.out, exist_ok=True)
        from learnable_ops import demo_figures

        figures = demo_figures.write_all(models, results, config)
        with open(os.path.join(config.out, "results.md"), "w") as f:
            f.write(table + "\n")
        with open(os.path.join(config.out, "results.json"), "w") as f:
            json.dump(
                {
                    "data": data.source,
                    "device": str(device),
                    "world_size": dist_info.world_size,
                    "torch": torch.__version__,
                    "config": {k: v for k, v in asdict(config).items() if k != "progress"},
                    "results": [asdict(r) for r in results],
                    "seconds_until_figures": time.perf_counter() - start,
                },
                f,
                indent=2,
            )
        print(f"\nwrote {config.out}/results.md, results.json and " + ", ".join(os.path.basename(p) for p in figures))
        print(f"demo finished in {time.perf_counter() - start:.0f} s")
    if dist_info.active:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return results
