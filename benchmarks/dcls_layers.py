"""Benchmark the DCLS layers end to end (training step vs nn.Conv2d, eval kernel cache). Usage: python benchmarks/dcls_layers.py [--device cuda] [--size small]"""

from learnable_ops.benchmarks.dcls_layers import cases
from learnable_ops.benchmarks.runner import main_for

if __name__ == "__main__":
    main_for(cases)
