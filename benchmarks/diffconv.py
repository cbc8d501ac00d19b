"""Benchmark ``learnable_ops.diff_conv2d`` against ``F.conv2d(padding='same')``. Usage: python benchmarks/diffconv.py [--device cuda] [--size small]"""

from learnable_ops.benchmarks.diffconv import cases
from learnable_ops.benchmarks.runner import main_for

if __name__ == "__main__":
    main_for(cases)
