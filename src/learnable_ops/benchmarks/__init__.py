"""Benchmarks, side by side with the PyTorch baseline of the same run.

Each family has a module here with a ``cases(device, size)`` function; the
``benchmarks/<family>.py`` scripts and ``learnable-ops bench`` run them through
:mod:`learnable_ops.benchmarks.runner`.
"""

FAMILIES = ("pad", "dcls", "dcls_layers")
