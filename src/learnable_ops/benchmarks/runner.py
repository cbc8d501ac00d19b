"""Benchmark runner: times candidate and baseline in one run, prints a table,
writes JSON (and markdown) with the device, torch version, shapes and ratios.

Times come from :class:`torch.utils.benchmark.Timer` (which synchronises CUDA)
with ``blocked_autorange``; the reported figure is the median of the fastest of
ROUNDS alternating rounds of candidate and baseline. Peak memory is
measured on CUDA with ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.utils.benchmark as tbench


@dataclass
class Case:
    """One comparison: ``candidate`` against ``baseline`` on the same inputs."""

    family: str
    name: str
    shape: str
    candidate: Callable[[], object]
    baseline: Callable[[], object]
    baseline_name: str
    target: float | None = None  # the ratio the issue asks for (candidate / baseline <= target)
    extra: dict = field(default_factory=dict)


@dataclass
class Result:
    family: str
    name: str
    shape: str
    baseline_name: str
    candidate_ms: float
    baseline_ms: float
    ratio: float
    target: float | None
    candidate_peak_mib: float | None = None
    baseline_peak_mib: float | None = None
    memory_ratio: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None else self.ratio <= self.target


def device_description(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _time_ms(fn: Callable[[], object], min_run_time: float) -> float:
    fn()  # warm-up: lazy init, autotuning, allocator
    # Timer runs its statement on ONE thread unless told otherwise (num_threads defaults to 1):
    # time on the threads the results report (device_description, "threads").
    timer = tbench.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def _peak_mib(fn: Callable[[], object], device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


# Candidate and baseline are timed alternately in this many rounds (each for a third of
# min_run_time), and each keeps its fastest round's median: a transient slowdown of the
# GPU (clocks, another process) in one round then moves neither figure. Single timings
# of a row had differed by up to 1.6x between two rows of the same run on an H100.
ROUNDS = 3


def run_cases(cases: list[Case], device: str, min_run_time: float = 0.5) -> list[Result]:
    results = []
    for case in cases:
        cand = base = float("inf")
        for _ in range(ROUNDS):
            cand = min(cand, _time_ms(case.candidate, min_run_time / ROUNDS))
            base = min(base, _time_ms(case.baseline, min_run_time / ROUNDS))
        cpeak, bpeak = _peak_mib(case.candidate, device), _peak_mib(case.baseline, device)
        results.append(
            Result(
                family=case.family,
                name=case.name,
                shape=case.shape,
                baseline_name=case.baseline_name,
                candidate_ms=cand,
                baseline_ms=base,
                ratio=cand / base,
                target=case.target,
                candidate_peak_mib=cpeak,
                baseline_peak_mib=bpeak,
                memory_ratio=(cpeak / bpeak) if cpeak is not None and bpeak else None,
                extra=case.extra,
            )
        )
        print(_row(results[-1]), flush=True)
    return results


HEADER = "| family | case | shape | ours (ms) | baseline | baseline (ms) | ratio | target | peak mem ratio |"


def _row(r: Result) -> str:
    target = "" if r.target is None else f"<= {r.target:g} {'ok' if r.meets_target else 'MISSED'}"
    mem = "" if r.memory_ratio is None else f"{r.memory_ratio:.2f}"
    return (
        f"| {r.family} | {r.name} | {r.shape} | {r.candidate_ms:.3f} | {r.baseline_name} | "
        f"{r.baseline_ms:.3f} | {r.ratio:.2f}x | {target} | {mem} |"
    )


def markdown(results: list[Result], device: str) -> str:
    lines = [
        f"Device: {device_description(device)}; torch {torch.__version__}",
        "",
        HEADER,
        "|---" * (HEADER.count("|") - 1) + "|",
    ]
    lines += [_row(r) for r in results]
    return "\n".join(lines) + "\n"


def report(results: list[Result], device: str, json_path: str | None = None, md_path: str | None = None) -> dict:
    payload = {
        "device": device_description(device),
        "device_kind": device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "threads": torch.get_num_threads(),
        "results": [dict(asdict(r), meets_target=r.meets_target) for r in results],
    }
    if json_path:
        with open(json_path, "w") as f:
            json.dump(payload, f, indent=2)
    if md_path:
        with open(md_path, "w") as f:
            f.write(markdown(results, device))
    return payload


def main_for(family_cases: Callable[[str, str], list[Case]], argv=None) -> list[Result]:
    """Command-line entry used by ``benchmarks/<family>.py``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=["small", "full"], default="full")
    parser.add_argument("--json", default=None)
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--min-run-time", type=float, default=0.5)
    args = parser.parse_args(argv)
    results = run_cases(family_cases(args.device, args.size), args.device, args.min_run_time)
    print()
    print(markdown(results, args.device))
    report(results, args.device, args.json, args.markdown)
    return results
