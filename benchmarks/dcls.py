"""Benchmark ``learnable_ops.dcls_construct`` against the 0.1.x broadcast construction. Usage: python benchmarks/dcls.py [--device cuda] [--size small]"""

from learnable_ops.benchmarks.dcls import cases, memory_table
from learnable_ops.benchmarks.runner import main_for

if __name__ == "__main__":
    print(memory_table(main_for(cases)))
