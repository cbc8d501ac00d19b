"""Benchmark ``learnable_ops.depthwise_conv2d`` and the sparse DCLS path. Usage: python benchmarks/depthwise.py [--device cuda] [--size small]"""

from learnable_ops.benchmarks.depthwise import cases
from learnable_ops.benchmarks.runner import main_for

if __name__ == "__main__":
    main_for(cases)
