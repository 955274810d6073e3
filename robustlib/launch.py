"""Run one training on K processes with ``torchrun`` and hand the result back to the calling process.

``train_cached`` uses this when ``ROBUSTLIB_GPUS`` = K > 1 (``python -m robustlib reproduce --gpus K`` sets it for
every notebook): the model, method, data and configuration are saved to ``<out_dir>/spec.pt``, K worker processes
(``python -m robustlib.launch <spec>``) train data-parallel and rank 0 writes the checkpoint, and the caller then
opens the finished checkpoint with an ordinary Trainer whose configuration says ``data_shards=K`` — the
single-process equivalent of the K-process run (see :mod:`robustlib.distributed`).
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import torch

from .errors import RobustlibError


class LaunchError(RobustlibError):
    """The multi-process training failed."""


def spawn(model, method, data, config, out_dir: str | Path, nproc: int, device: str = "auto", selector=None,
          name: str | None = None, timeout: float | None = None):
    """Train on ``nproc`` processes; returns the config to reopen the result with (``data_shards=nproc``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(config, data_shards=nproc)
    spec = out_dir / "spec.pt"
    torch.save({"model": model, "method": method, "data": data, "config": config, "selector": selector,
                "device": str(device), "name": name, "out_dir": str(out_dir)}, spec)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "robustlib.launch", str(spec)]
    env = {**os.environ, "ROBUSTLIB_GPUS": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LaunchError(f"{nproc}-process training failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return config


def main(argv: list[str] | None = None) -> int:
    from .training import Trainer
    argv = sys.argv[1:] if argv is None else argv
    spec = torch.load(argv[0], weights_only=False)  # our own file, written by spawn()
    trainer = Trainer(spec["model"], spec["method"], spec["data"], spec["config"], out_dir=spec["out_dir"],
                      device=spec["device"], selector=spec["selector"], name=spec["name"], progress_bar=False)
    res = trainer.fit()
    if trainer.rank == 0:
        print(f"[launch] {trainer.world} processes, {res.epochs} epochs, {res.train_seconds:.1f} s, "
              f"{res.passes_per_sample:.1f} N per sample")
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
