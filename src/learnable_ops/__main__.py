import sys

from learnable_ops.cli import main

sys.exit(main())
