"""The benchmark runner times on the threads its results report."""

import torch

from learnable_ops.benchmarks import runner


def test_timing_runs_on_the_reported_threads():
    seen = set()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        runner._time_ms(lambda: seen.add(torch.get_num_threads()), min_run_time=0.01)
        assert seen == {2}, seen  # torch.utils.benchmark.Timer alone would time on 1 thread
        assert "2 threads" in runner.device_description("cpu")
    finally:
        torch.set_num_threads(before)
