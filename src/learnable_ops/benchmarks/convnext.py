"""timm ``convnext_tiny`` with every 7x7 depthwise conv replaced by our
:class:`learnable_ops.nn.Dcls2d` (34 taps in 17x17, versions v0 and gauss,
``method='auto'``), against the unmodified model (cuDNN).

* inference at batch 128 in fp32 and in bf16 autocast (target: DCLS/baseline time <= 1.0);
* a training step (forward, backward, SGD step) at batch 64 in bf16 autocast (target <= 1/0.95).

The model is built with :func:`learnable_ops.convert.convert`, as a user would, and
runs exactly as a user's would: the inference cases put the model in eval mode
once, outside the timed call, so ``Dcls2d``'s eval-mode kernel cache works as it
does for a user (``eval()`` drops the cache). Each case records the path
dispatch chose for every layer (``extra['methods']``, by input shape).

timm is a benchmark dependency only, imported when the cases are built: without
it ``cases`` returns no case.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from learnable_ops.benchmarks.runner import Case
from learnable_ops.convert import convert, is_depthwise

KERNEL_COUNT = 34
DILATED_KERNEL_SIZE = 17
VERSIONS = ("v0", "gauss")


def is_depthwise_7x7(module: nn.Module, fqn: str = "") -> bool:
    """The convs ConvNeXt-dcls replaces: exact depthwise ``nn.Conv2d`` with a 7x7 kernel."""
    return is_depthwise(module, fqn) and tuple(module.kernel_size) == (7, 7)


def dcls_convnext(
    model: nn.Module,
    version: str,
    kernel_count: int = KERNEL_COUNT,
    dilated_kernel_size: int = DILATED_KERNEL_SIZE,
    method: str = "auto",
) -> nn.Module:
    """A copy of ``model`` whose 7x7 depthwise convs are :class:`learnable_ops.nn.Dcls2d` layers.

    Built by :func:`learnable_ops.convert.convert` with the DCLS recipe initialisation
    (``kernel_count`` fresh taps in ``dilated_kernel_size``, padded to keep each conv's
    output shape); ``model`` itself is left unchanged.

    Raises:
        ValueError: if ``model`` has no 7x7 depthwise conv.
    """
    report = convert(
        model, "dcls", filter_fn=is_depthwise_7x7, inplace=False, kernel_count=kernel_count,
        dilated_kernel_size=dilated_kernel_size, version=version, method=method,
    )
    if not report.num_replaced:
        raise ValueError(f"{type(model).__name__} has no 7x7 depthwise nn.Conv2d to replace")
    return report.model


def chosen_methods(model: nn.Module, run: Callable[[], object]) -> dict[str, str]:
    """The path (``'sparse'``, ``'dense'``, ``'construct'``) each DCLS layer of ``model`` takes
    during one call of ``run``, keyed by the layer's input shape ``'CxHxW'`` (layers of one
    shape that disagree are joined with ``'/'``).

    Asked of each layer from a forward pre-hook, inside ``run``'s own autocast and grad
    context, so it is the decision the layer's forward then makes.
    """
    from learnable_ops.nn import Dcls2d

    seen: dict[str, set[str]] = {}

    def record(layer, args):
        x = args[0]
        shape = "x".join(str(s) for s in x.shape[1:])
        seen.setdefault(shape, set()).add(layer._resolve_method(x))

    handles = [m.register_forward_pre_hook(record) for m in model.modules() if isinstance(m, Dcls2d)]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return {shape: "/".join(sorted(methods)) for shape, methods in seen.items()}


def _inference(model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> Callable[[], object]:
    model.eval()  # once, here: eval() drops Dcls2d's kernel cache
    device_type = x.device.type

    def run():
        with torch.no_grad(), torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            return model(x)

    return run


def _train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], object]:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    device_type = x.device.type

    def run():
        with torch.autocast(device_type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), target)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return run


def cases(device: str, size: str = "full") -> list[Case]:
    try:
        import timm
    except ImportError:
        print("timm is not installed: skipping the ConvNeXt benchmark")
        return []
    full = size == "full" and device.startswith("cuda")
    infer_batch, train_batch, image = (128, 64, 224) if full else (4, 2, 64)
    base = timm.create_model("convnext_tiny", pretrained=False).to(device)
    base_train = copy.deepcopy(base)
    x = torch.randn(infer_batch, 3, image, image, device=device)
    xt = torch.randn(train_batch, 3, image, image, device=device)
    target = torch.randint(0, 1000, (train_batch,), device=device)
    baseline = "convnext_tiny (cuDNN)" if device.startswith("cuda") else "convnext_tiny (torch conv)"
    out = []
    for version in VERSIONS:
        dcls = dcls_convnext(base, version)
        for label, dtype in (("fp32", None), ("bf16 autocast", torch.bfloat16)):
            candidate = _inference(dcls, x, dtype)
            out.append(Case(
                "convnext", f"convnext_tiny-dcls {version} inference {label}", f"({infer_batch}, 3, {image}, {image})",
                candidate, _inference(base, x, dtype), baseline, target=1.0,
                extra={"version": version, "methods": chosen_methods(dcls, candidate)},
            ))
        # Its own copy: the SGD steps of the training case must not change the inference models.
        dcls_train = copy.deepcopy(dcls)
        candidate = _train_step(dcls_train, xt, target)
        out.append(Case(
            "convnext", f"convnext_tiny-dcls {version} train step bf16 autocast", f"({train_batch}, 3, {image}, {image})",
            candidate, _train_step(base_train, xt, target), baseline, target=1 / 0.95,
            extra={"version": version, "methods": chosen_methods(dcls_train, candidate)},
        ))
    return out
