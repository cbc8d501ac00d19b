"""The ``learnable-ops`` command line: ``info``, ``bench`` and ``demo``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad command-line argument: printed without a traceback, exit code 2."""


def _cmd_info(args) -> int:
    import torch

    import learnable_ops as lo

    info = lo.build_info()
    print(f"learnable_ops {lo.__version__}")
    print(f"  built against torch {info['torch_version']} (running torch {torch.__version__})")
    print(f"  CUDA kernels:        {'yes' if info['cuda'] else 'no'}"
          + (f" (architectures {info['cuda_architectures']}, {info['cuda_compiler']})" if info["cuda"] else ""))
    print(f"  CUDA device:         {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}"
          + (f" (torch CUDA {torch.version.cuda})" if torch.version.cuda else ""))
    print(f"  OpenMP:              {'yes' if info['openmp'] else 'no'} ({torch.get_num_threads()} threads)")
    print(f"  compiler:            {info['compiler']}")
    print("  operators, their device kernels, and whether a fake (meta) kernel serves torch.compile/export:")
    for name, keys in lo.ops_with_kernels().items():
        devices = ", ".join(k for k in keys if k != "Meta") or "none"
        print(f"    {name:<28} {devices:<26} {'fake' if 'Meta' in keys else 'NO FAKE KERNEL'}")
    return 0


def _cmd_bench(args) -> int:
    import torch

    from learnable_ops.benchmarks import FAMILIES
    from learnable_ops.benchmarks.runner import markdown, report, run_cases

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda was given but no CUDA device is available")
    families = FAMILIES if args.family == "all" else (args.family,)
    os.makedirs(args.out, exist_ok=True)
    all_results = []
    for family in families:
        module = importlib.import_module(f"learnable_ops.benchmarks.{family}")
        cases = module.cases(args.device, args.size)
        if args.only:
            cases = [c for c in cases if any(part in c.name for part in args.only)]
            if not cases:
                print(f"{family}: no case name contains any of {args.only}")
                continue
        results = run_cases(cases, args.device, args.min_run_time)
        report(results, args.device, os.path.join(args.out, f"{family}.json"), os.path.join(args.out, f"{family}.md"))
        all_results += results
    text = markdown(all_results, args.device)
    with open(os.path.join(args.out, "bench.md"), "w") as f:
        f.write(text)
    print()
    print(text)
    print(f"wrote {args.out}/<family>.json, <family>.md and bench.md")
    return 0


def _cmd_demo(args) -> int:
    from learnable_ops.demo import VARIANTS, DemoConfig, DemoInputError, run

    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip()) if args.variants else VARIANTS
    config = DemoConfig(
        data=args.data,
        device=args.device,
        epochs=args.epochs,
        out=args.out,
        variants=variants,
        image_size=args.image_size,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
        progress=not args.no_progress,
    )
    try:
        run(config)
    except DemoInputError as exc:
        raise UsageError(str(exc)) from exc
    return 0


def build_parser() -> argparse.ArgumentParser:
    from learnable_ops.benchmarks import FAMILIES

    parser = argparse.ArgumentParser(prog="learnable-ops", description="learnable_ops: learnable spatial operators")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print how the native extension was built and which kernels it has")
    info.set_defaults(func=_cmd_info)

    bench = sub.add_parser("bench", help="run the benchmarks against the PyTorch baselines")
    bench.add_argument("--family", default="all", choices=("all",) + tuple(FAMILIES))
    bench.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    bench.add_argument("--size", default="full", choices=("small", "full"))
    bench.add_argument("--out", default="bench-results")
    bench.add_argument("--min-run-time", type=float, default=0.3)
    bench.add_argument("--only", action="append", default=[], metavar="TEXT",
                       help="run only the cases whose name contains TEXT (repeatable: any of them), "
                       "e.g. --only 'fwd+bwd'")
    bench.set_defaults(func=_cmd_bench)

    from learnable_ops.demo import VARIANTS, DemoConfig

    defaults = DemoConfig()
    demo = sub.add_parser(
        "demo",
        help="train one small ConvNeXt five times (depthwise, DCLS, sparse/active shift, DiffConv2d) and plot",
        description="Trains a small ConvNeXt-style network on scikit-learn's digits (or --data) with five "
        "spatial operators, prints accuracy / parameters / time per epoch, and writes figures. "
        "For data-parallel training launch it with torchrun, e.g. "
        "`torchrun --nproc_per_node 2 -m learnable_ops demo`.",
    )
    demo.add_argument("--data", default=None, metavar="PATH",
                      help="an image folder with one subfolder per class, or a .npz with arrays x and y "
                      "(default: scikit-learn's load_digits)")
    demo.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    demo.add_argument("--epochs", type=int, default=defaults.epochs, help=f"default {defaults.epochs}")
    demo.add_argument("--out", default=defaults.out, metavar="DIR", help="where figures and results go")
    demo.add_argument("--variants", default=None,
                      help=f"comma-separated subset of {','.join(VARIANTS)} (default: all)")
    demo.add_argument("--image-size", type=int, default=defaults.image_size, help="side of the resized images")
    demo.add_argument("--batch-size", type=int, default=defaults.batch_size, help="global batch size")
    demo.add_argument("--lr", type=float, default=defaults.lr)
    demo.add_argument("--seed", type=int, default=defaults.seed)
    demo.add_argument("--threads", type=int, default=defaults.threads,
                      help="CPU threads per process (default 1: the network is too small to gain from more, "
                      "and one thread per process is what torchrun sets)")
    demo.add_argument("--no-progress", action="store_true", help="no progress bars")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"learnable-ops {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
