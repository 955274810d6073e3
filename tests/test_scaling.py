"""Scale-out and fast paths must not change results: a 2-process gloo run equals the single-process run that sees
the same global batches, and the torch.compile path gives the eager path's losses."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

import robustlib as rl
from robustlib import launch
from robustlib.methods import PGDAT, Standard
from robustlib.utils import load_checkpoint
from conftest import tiny_resnet


@pytest.fixture(scope="module")
def small():
    return rl.load_dataset("synthetic", "train", n=256)


def _cfg(**kw):
    # fp32: the K-process ↔ one-process equivalence is exact up to summation order, which bf16 would swamp (a CPU
    # with native bf16 picks bf16 under amp="auto")
    base = dict(epochs=2, batch_size=32, augment=rl.Augment(), schedule={"name": "constant", "lr": 0.05}, seed=0,
                ema=(0.9,), amp="off")
    base.update(kw)
    return rl.TrainConfig(**base)


def test_sharded_batches_cover_each_shard_once_per_epoch(small):
    it = rl.BatchIterator(small, 32, shards=2, augment=None, seed=1)
    seen = torch.cat([x.flatten(1) for x, _ in it.epoch(0)])
    assert len(seen) == 256 and len(it) == 8
    part = rl.BatchIterator(small, 32, shards=2, rank=1, augment=rl.Augment(), seed=1)
    whole = rl.BatchIterator(small, 32, shards=2, augment=rl.Augment(), seed=1)
    for (xr, yr), (xw, yw) in zip(part.epoch(3), whole.epoch(3)):
        assert torch.equal(xr, xw[16:]) and torch.equal(yr, yw[16:])  # rank 1 trains on the second half


@pytest.mark.slow
def test_two_process_gloo_run_matches_the_single_process_run(small, tmp_path):
    """Gradient averaging, global-batch BatchNorm, sharded data and weight averages together. Compared over a few
    steps: later, two runs that differ only in float summation order drift apart (tiny networks on 16×16 images
    have BatchNorm channels of near-zero variance that amplify rounding), as any two reduction orders would."""
    torch.manual_seed(0)
    init = tiny_resnet()
    cfg = _cfg(epochs=2, max_batches=2)
    reopen = launch.spawn(copy.deepcopy(init), Standard(), small, cfg, tmp_path / "dist", 2, "cpu", timeout=300)
    assert reopen.data_shards == 2
    single = rl.train(copy.deepcopy(init), Standard(), small, dataclasses.replace(cfg, data_shards=2), device="cpu",
                      progress_bar=False)
    state = load_checkpoint(tmp_path / "dist" / "last.pt")
    assert state["finished"] and state["epoch"] == 2
    for k, v in single.model.state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(state["model"][k], v, atol=2e-4, rtol=1e-3), k
    for k, v in single.emas["ema0.9"].state_dict().items():
        if v.dtype.is_floating_point:
            assert torch.allclose(state["emas"]["ema0.9"][k], v, atol=2e-4, rtol=1e-3), k
    import json
    losses = [r["train_loss"] for r in json.loads(state["history"])]
    assert losses == pytest.approx(single.history["train_loss"].tolist(), rel=1e-4)
    # the parent reopens the finished distributed run as its single-process equivalent and trains nothing
    again = rl.Trainer(copy.deepcopy(init), Standard(), small, reopen, out_dir=tmp_path / "dist", device="cpu")
    assert again.finished


@pytest.mark.parametrize("method", [Standard(), PGDAT(8 / 255, 2 / 255, 2)], ids=["standard", "pgd_at"])
@pytest.mark.slow
def test_compiled_path_gives_the_eager_losses(small, method):
    torch.manual_seed(0)
    init = tiny_resnet()
    cfg = _cfg(epochs=1, max_batches=3, ema=())
    torch.manual_seed(1)
    eager = rl.train(copy.deepcopy(init), method, small, cfg, device="cpu", progress_bar=False)
    torch.manual_seed(1)
    fast = rl.train(copy.deepcopy(init), method, small, dataclasses.replace(cfg, compile={"backend": "aot_eager"}),
                    device="cpu", progress_bar=False)
    assert fast.history["train_loss"].tolist() == pytest.approx(eager.history["train_loss"].tolist(), rel=1e-4)
    assert fast.cost == eager.cost
    for a, b in zip(eager.model.state_dict().values(), fast.model.state_dict().values()):
        if a.dtype.is_floating_point:
            assert torch.allclose(a, b, atol=1e-5)


def _spawn_workers(fn, world=2):
    import torch.multiprocessing as mp
    mp.spawn(fn, args=(world,), nprocs=world, join=True)


def _gather_worker(rank, world):
    import os
    import torch.distributed as tdist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29617")
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    from robustlib.distributed import GlobalBatchNorm, gather_rows
    torch.manual_seed(0)
    full = torch.randn(8, 3, requires_grad=True)
    w = torch.randn(8, 3)
    (torch.linalg.matrix_norm(full * w, ord="nuc")).backward()
    mine = full.detach()[rank * 4:(rank + 1) * 4].clone().requires_grad_(True)
    torch.linalg.matrix_norm(gather_rows(mine) * w, ord="nuc").backward()
    # every rank computes the same batch-wide term, so the gathered rows' gradients are summed over ranks; the
    # Trainer's gradient averaging (÷ world) then gives the single-process gradient
    assert torch.allclose(mine.grad / world, full.grad[rank * 4:(rank + 1) * 4], atol=1e-5)
    x = torch.randn(8, 4, 3, 3) * 2 + 1
    bn, g = torch.nn.BatchNorm2d(4), GlobalBatchNorm(4)
    xa = x.clone().requires_grad_(True)
    (bn(xa) * x).sum().backward()
    xb = x[rank * 4:(rank + 1) * 4].clone().requires_grad_(True)
    (g(xb) * x[rank * 4:(rank + 1) * 4]).sum().backward()
    assert torch.allclose(xb.grad, xa.grad[rank * 4:(rank + 1) * 4], atol=1e-5)
    assert torch.allclose(g.running_var, bn.running_var, atol=1e-6)
    tdist.destroy_process_group()


def test_batch_coupling_collectives_match_one_process():
    """gather_rows (for NuAT's batch-wide nuclear norm) and GlobalBatchNorm give the single-process gradients."""
    _spawn_workers(_gather_worker)


# ------------------------------------------------------------------ the launch spec loads without running code

_UNPICKLED: list = []


def _record_call(*args):
    _UNPICKLED.append(args)
    return args


class _RunsCodeWhenUnpickled:
    def __reduce__(self):
        return _record_call, ("unpickled",)


def test_spawn_writes_a_spec_that_loads_with_weights_only(small, tmp_path, monkeypatch):
    """What travels to the workers (model, method with an attack, data, config, selector) is plain data and tensors:
    ``torch.load(weights_only=True)`` reads the file, and :func:`launch.load_spec` rebuilds equal objects."""
    import subprocess
    from robustlib.attacks import PGD
    monkeypatch.setattr(launch.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    torch.manual_seed(0)
    model, method = tiny_resnet(), PGDAT(8 / 255, 2 / 255, 2)
    selector = rl.Selector(small.head(32), PGD(8 / 255, 2 / 255, 3))
    launch.spawn(model, method, small, _cfg(), tmp_path, 2, "cpu", selector, "key")
    raw = torch.load(tmp_path / "spec.pt", weights_only=True)
    assert raw["format"] == launch.SPEC_FORMAT
    spec = launch.load_spec(tmp_path / "spec.pt")
    assert (spec["device"], spec["name"], spec["out_dir"]) == ("cpu", "key", str(tmp_path))
    assert repr(spec["method"]) == repr(method) and spec["config"] == dataclasses.replace(_cfg(), data_shards=2)
    assert torch.equal(spec["data"].x, small.x) and spec["data"].classes == small.classes
    assert torch.equal(spec["selector"].data.x, small.x[:32]) and repr(spec["selector"].attack) == repr(selector.attack)
    x = small.images()[:4]
    model.eval(), spec["model"].eval()
    with torch.no_grad():
        assert torch.equal(spec["model"](x), model(x))


def test_a_spec_holding_a_pickled_object_is_refused_without_running_it(tmp_path):
    path = tmp_path / "spec.pt"
    torch.save({"format": launch.SPEC_FORMAT, "spec": {"model": _RunsCodeWhenUnpickled()}}, path)
    _UNPICKLED.clear()
    with pytest.raises(launch.LaunchError, match="pickled objects"):
        launch.main([str(path)])
    assert _UNPICKLED == []
    # plain data that names a class or function outside robustlib/torch/torchvision is refused too
    torch.save({"format": launch.SPEC_FORMAT, "spec": {"model": {"~": "global", "ref": "os:system"}}}, path)
    with pytest.raises(launch.LaunchError, match="only classes and functions of the packages"):
        launch.load_spec(path)
    torch.save({"format": launch.SPEC_FORMAT, "spec": {"model": {"~": "global", "ref": "torch:os.system"}}}, path)
    with pytest.raises(launch.LaunchError, match="only classes and functions of the packages"):
        launch.load_spec(path)
    torch.save({"format": launch.SPEC_FORMAT, "spec": {"model": {"~": "object", "cls": "subprocess:Popen",
                                                                 "state": {}}}}, path)
    with pytest.raises(launch.LaunchError, match="'subprocess:Popen'"):
        launch.load_spec(path)


def test_save_spec_names_what_cannot_travel(tmp_path):
    method = Standard()
    method.weight_fn = lambda t: t
    with pytest.raises(launch.LaunchError, match=r"method\.weight_fn .*lambdas"):
        launch.save_spec(tmp_path / "spec.pt", {"method": method})
