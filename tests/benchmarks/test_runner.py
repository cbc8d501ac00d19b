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


def test_bench_only_runs_the_named_cases(tmp_path, capsys):
    import json

    from learnable_ops.cli import main

    out = tmp_path / "o"
    code = main(["bench", "--family", "diffconv", "--size", "small", "--min-run-time", "0.001",
                 "--only", "dense K=3 fwd+bwd", "--only", "depthwise K=5 fwd+bwd", "--out", str(out)])
    assert code == 0
    names = sorted(r["name"] for r in json.load(open(out / "diffconv.json"))["results"])
    assert names == ["dense K=3 fwd+bwd", "depthwise K=5 fwd+bwd"]
    code = main(["bench", "--family", "diffconv", "--size", "small", "--only", "no such case", "--out", str(out)])
    assert code == 0
    assert "no case name contains" in capsys.readouterr().out
