"""Benchmark the shift layers against x.clone() and a depthwise 3x3 conv. Usage: python benchmarks/shift.py [--device cuda] [--size small]"""

from learnable_ops.benchmarks.runner import main_for
from learnable_ops.benchmarks.shift import cases

if __name__ == "__main__":
    main_for(cases)
