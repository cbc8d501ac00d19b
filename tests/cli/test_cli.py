"""The command line: bad input exits with code 2 and a clear message; a tiny demo runs end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from learnable_ops.cli import main

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")


def run_cli(argv, capsys):
    """Runs ``learnable-ops argv`` in-process; returns (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse reports usage errors this way
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def write_npz(path, n=60, size=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, size, size)) * 0.1
    for c in range(classes):  # one bright quadrant per class: learnable in one epoch
        x[y == c, (c % 2) * size // 2 : (c % 2 + 1) * size // 2, (c // 2) * size // 2 : (c // 2 + 1) * size // 2] += 1
    np.savez(path, x=x.astype(np.float32), y=y)
    return path


def test_missing_data_path(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code, _, err = run_cli(["demo", "--data", str(missing), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert str(missing) in err and "no such file or directory" in err
    assert "Traceback" not in err


def test_unreadable_npz(tmp_path, capsys):
    bad = tmp_path / "broken.npz"
    bad.write_bytes(b"this is not a zip archive")
    code, _, err = run_cli(["demo", "--data", str(bad), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "cannot read it as a .npz archive" in err and str(bad) in err


def test_npz_without_labels(tmp_path, capsys):
    path = tmp_path / "nolabels.npz"
    np.savez(path, x=np.zeros((20, 8, 8)))
    code, _, err = run_cli(["demo", "--data", str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "'y'" in err


def test_unreadable_image_in_folder(tmp_path, capsys):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "imgs" / c / "ok.png")
    corrupt = tmp_path / "imgs" / "b" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG but not really")
    code, _, err = run_cli(["demo", "--data", str(tmp_path / "imgs"), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "cannot read image" in err and "corrupt.png" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied(tmp_path, capsys):
    path = write_npz(tmp_path / "locked.npz")
    os.chmod(path, 0)
    code, _, err = run_cli(["demo", "--data", str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "permission denied" in err


def test_wrong_file_type(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text("1,2,3\n")
    code, _, err = run_cli(["demo", "--data", str(path), "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "folder of class subfolders or a .npz" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("command", [["demo"], ["bench", "--size", "small"]])
def test_cuda_without_gpu(tmp_path, capsys, command):
    code, _, err = run_cli(command + ["--device", "cuda", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "no CUDA device is available" in err


def test_unknown_device(tmp_path, capsys):
    code, _, err = run_cli(["demo", "--device", "tpu", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "--device must be cpu or cuda" in err


def test_unknown_variant(tmp_path, capsys):
    code, _, err = run_cli(["demo", "--variants", "depthwise,winograd", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "winograd" in err and "depthwise, dcls" in err


def test_unknown_bench_family(tmp_path, capsys):
    code, _, err = run_cli(["bench", "--family", "fft", "--out", str(tmp_path / "o")], capsys)
    assert code == 2
    assert "invalid choice: 'fft'" in err


def test_exit_code_through_the_entry_point(tmp_path):
    """The real process exits with 2 (not only main()'s return value)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run(
        [sys.executable, "-m", "learnable_ops", "demo", "--data", str(tmp_path / "missing.npz")],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "no such file or directory" in proc.stderr


def test_info(capsys):
    code, out, _ = run_cli(["info"], capsys)
    assert code == 0
    assert "built against torch" in out and "pad" in out


def test_demo_on_npz_end_to_end(tmp_path, capsys):
    data = write_npz(tmp_path / "toy.npz")
    out_dir = tmp_path / "out"
    code, out, _ = run_cli(
        ["demo", "--data", str(data), "--variants", "depthwise", "--epochs", "2", "--image-size", "20",
         "--batch-size", "16", "--no-progress", "--out", str(out_dir)],
        capsys,
    )
    assert code == 0
    assert "| depthwise |" in out
    results = json.loads((out_dir / "results.json").read_text())
    assert [r["name"] for r in results["results"]] == ["depthwise"]
    assert results["results"][0]["parameters"] > 0
    assert len(results["results"][0]["test_accuracy_per_epoch"]) == 2
    assert (out_dir / "training_curves.png").stat().st_size > 0


def test_image_folder_loader(tmp_path):
    from PIL import Image

    from learnable_ops.demo import load_data

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for k in range(6):
            Image.fromarray(rng.integers(0, 255, (10, 14, 3), dtype=np.uint8)).save(tmp_path / c / f"{k}.png")
    data = load_data(str(tmp_path), image_size=20)
    assert data.classes == ["cat", "dog"]
    assert data.x_train.shape[1:] == (3, 20, 20)
    assert len(data.y_train) + len(data.y_test) == 12
    assert sorted(set(data.y_train.tolist())) == [0, 1]
