"""Benchmark ``learnable_ops.pad`` against ``F.pad``. Usage: python benchmarks/pad.py [--device cuda] [--size small]"""

from learnable_ops.benchmarks.pad import cases
from learnable_ops.benchmarks.runner import main_for

if __name__ == "__main__":
    main_for(cases)
