"""`torchrun --nproc_per_node 2 -m learnable_ops demo` trains with DDP (gloo) on the CPU."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from test_cli import write_npz  # noqa: E402


def test_demo_under_torchrun(tmp_path):
    data = write_npz(tmp_path / "toy.npz")
    out_dir = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "learnable_ops", "demo", "--data", str(data), "--variants", "depthwise,sparse-shift",
         "--epochs", "2", "--image-size", "20", "--batch-size", "16", "--no-progress", "--out", str(out_dir)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("| depthwise |") == 1  # only rank 0 prints the table
    assert "DDP over 2 processes" in proc.stdout
    results = json.loads((out_dir / "results.json").read_text())
    assert results["world_size"] == 2
    assert [r["name"] for r in results["results"]] == ["depthwise", "sparse-shift"]
