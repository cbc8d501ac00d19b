"""Loads the native extension ``learnable_ops._C`` and checks it matches torch."""

from __future__ import annotations

import importlib

import torch

_REBUILD = (
    "Rebuild learnable_ops against the installed torch with "
    "`pip install --no-build-isolation --force-reinstall --no-deps .` from the source tree "
    "(or `tools/dev-build` for a developer build)."
)


def _load():
    try:
        config = importlib.import_module("learnable_ops._build_config")
    except ImportError as exc:
        raise ImportError(
            "learnable_ops: the native extension is not built. Build it with "
            "`pip install --no-build-isolation .` (torch must already be installed)."
        ) from exc
    if config.TORCH_VERSION != torch.__version__:
        raise ImportError(
            f"learnable_ops was built against torch {config.TORCH_VERSION} but torch "
            f"{torch.__version__} is installed; native ops are tied to one torch build. " + _REBUILD
        )
    try:
        return importlib.import_module("learnable_ops._C")
    except ImportError as exc:
        raise ImportError(f"learnable_ops: cannot load the native extension ({exc}). " + _REBUILD) from exc


_C = _load()


def build_info() -> dict:
    """How the native extension was built.

    Returns:
        A dict with ``torch_version`` (the torch the extension was compiled
        against), ``cuda`` (whether CUDA kernels are present),
        ``cuda_architectures``, ``cuda_compiler``, ``openmp`` (whether the
        extension was compiled with OpenMP, i.e. its CPU kernels run on
        ``torch.get_num_threads()`` threads), ``compiler`` and ``cxx11_abi``.
    """
    return dict(_C.build_info())


def ops_with_kernels() -> dict[str, list[str]]:
    """Maps each ``learnable_ops`` operator to the dispatch keys it has kernels for."""
    result = {}
    for name in dir(torch.ops.learnable_ops):
        packet = getattr(torch.ops.learnable_ops, name)
        if not isinstance(packet, torch._ops.OpOverloadPacket):
            continue
        qualname = f"learnable_ops::{name}"
        keys = [
            key
            for key in ("CPU", "CUDA", "QuantizedCPU", "Meta")
            if torch._C._dispatch_has_kernel_for_dispatch_key(qualname, key)
        ]
        result[name] = keys
    return dict(sorted(result.items()))
