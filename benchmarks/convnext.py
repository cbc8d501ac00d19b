"""timm convnext_tiny with DCLS (34 taps in 17x17) against the unmodified model. Usage: python benchmarks/convnext.py [--device cuda] [--size small]"""

from learnable_ops.benchmarks.convnext import cases
from learnable_ops.benchmarks.runner import main_for

if __name__ == "__main__":
    main_for(cases)
