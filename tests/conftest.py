"""Shared fixtures: tiny models trained on the synthetic dataset, and the shared data folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import robustlib as rl
from robustlib.methods import PGDAT, Standard

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROBUSTLIB_PROGRESS", "0")
torch.set_num_threads(min(2, os.cpu_count() or 1))


def _shared_data() -> Path:
    return Path(os.environ.get("ROBUSTLIB_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _shared_data()
    if not (root / "cifar10").exists():
        pytest.skip(f"shared data not found at {root} (set ROBUSTLIB_DATA)")
    return root


def tiny_resnet(num_classes: int = 10, **kw):
    return rl.build_model("resnet18", width=8, blocks=(1, 1, 1, 1), num_classes=num_classes, **kw)


@pytest.fixture(scope="session")
def synthetic():
    return rl.load_dataset("synthetic", "train", n=2000), rl.load_dataset("synthetic", "test", n=400)


def _train(method, data, epochs=3, seed=0):
    torch.manual_seed(seed)
    cfg = rl.TrainConfig(epochs=epochs, batch_size=64, augment=None, seed=seed,
                         schedule={"name": "cyclic", "max_lr": 0.1, "up": 1, "down": epochs - 1,
                                   "cycle_momentum": False})
    return rl.train(tiny_resnet(), method, data, cfg, device="cpu", progress_bar=False)


@pytest.fixture(scope="session")
def standard_model(synthetic):
    return _train(Standard(), synthetic[0]).model.eval()


@pytest.fixture(scope="session")
def robust_model(synthetic):
    return _train(PGDAT(eps=16 / 255, alpha=4 / 255, steps=5), synthetic[0]).model.eval()


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, data_root):
    """One smoke-profile batch of every notebook (papermill) with its HTML book, shared by the notebook and book
    tests. Trained models go to $ROBUSTLIB_CHECKPOINTS when set, so that `make test`'s nbval pass can reuse them."""
    from robustlib import reproduce
    run = tmp_path_factory.mktemp("smoke-run")
    logs: list[str] = []
    manifest = reproduce.reproduce("smoke", out=run, data_dir=data_root, book=True, log=logs.append)
    return {"dir": run, "manifest": manifest, "log": logs}
