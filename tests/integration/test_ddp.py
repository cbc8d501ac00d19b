"""DDP on 2 CPU processes (gloo): a converted model trained 3 steps ends with the same
parameters (weights, P, SIG, shifts) as 1 process trained on the same global batch."""

import pathlib
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from learnable_ops.convert import convert

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import model_zoo  # noqa: E402

WORLD = 2
STEPS = 3
GLOBAL_BATCH = 4


def setup(config: str):
    """The converted model, an optimizer and the per-step global batches (identical in every process)."""
    target, kwargs = model_zoo.CONFIGS[config]
    model, _ = model_zoo.build("convnext_stage")
    model.train()
    convert(model, target, **kwargs)
    gen = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(GLOBAL_BATCH, 4, 16, 16, generator=gen, dtype=torch.float64),
         torch.randn(GLOBAL_BATCH, 8, 8, 8, generator=gen, dtype=torch.float64))
        for _ in range(STEPS)
    ]
    return model, batches


def train(model, batches, rank: int = 0, world: int = 1):
    """3 SGD-with-momentum steps on this rank's shard of each global batch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    shard = GLOBAL_BATCH // world
    for x, y in batches:
        x, y = x[rank * shard:(rank + 1) * shard], y[rank * shard:(rank + 1) * shard]
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _worker(rank: int, init_file: str, out_dir: str, configs: list):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        for config in configs:
            model, batches = setup(config)
            train(DistributedDataParallel(model), batches, rank, WORLD)
            torch.save(dict(model.named_parameters(remove_duplicate=False)), f"{out_dir}/{config}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _available_configs():
    return [c for c, (t, _) in model_zoo.CONFIGS.items() if not isinstance(t, str) or model_zoo.layers_available(t)]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """Runs every available config in one 2-process spawn (starting processes is the slow part)."""
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    out_dir = tmp_path_factory.mktemp("ddp")
    configs = _available_configs()
    mp.spawn(_worker, args=(str(out_dir / "init"), str(out_dir), configs), nprocs=WORLD, join=True)
    return out_dir


@pytest.mark.parametrize("config", list(model_zoo.CONFIGS))
def test_ddp_two_processes_equal_one_process(config, ddp_results):
    model_zoo.require_config(config)
    model, batches = setup(config)
    initial = {n: p.detach().clone() for n, p in model.named_parameters(remove_duplicate=False)}
    train(model, batches)
    expected = dict(model.named_parameters(remove_duplicate=False))
    names = set(expected)
    if config.startswith("dcls"):
        assert any(n.endswith(".P") for n in names)
        if "gauss" in config:
            assert any(n.endswith(".SIG") for n in names)
    for rank in range(WORLD):
        got = torch.load(ddp_results / f"{config}-rank{rank}.pt")
        assert set(got) == names
        for name in names:
            torch.testing.assert_close(got[name], expected[name].detach(), atol=1e-10, rtol=1e-10, msg=name)
    # the training moved every parameter, so the equality above is not vacuous
    moved = [n for n in names if not torch.equal(initial[n], expected[n].detach())]
    assert len(moved) == len(names), sorted(names - set(moved))
