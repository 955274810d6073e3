"""One Trainer for every method.

The Trainer owns the loop: device-resident batches, SGD with a schedule set every iteration, weight averages (EMA
over parameters and BN buffers), bf16 autocast + channels_last on GPUs and on CPUs that compute bf16 natively (fp32
on other CPUs; :func:`robustlib.utils.cpu_bf16_native`), the cost meter, per-epoch checkpoint selection on a hold-out
split, tqdm progress, and checkpoints. The resolved precision and memory format are recorded in every epoch's
history and in the result. Attacks' perturbation arithmetic (sign steps, projections) stays in fp32: only network
passes run under autocast.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same Trainer runs data-parallel: see :mod:`robustlib.distributed` for how
a K-process run maps onto a single-process one (``TrainConfig(data_shards=K)`` reproduces it on one device).
``TrainConfig(compile={...})`` runs training and attack passes through ``torch.compile`` (keyword arguments passed
on); it must not change results, and a test compares it with the eager path.

Checkpoints: ``<out_dir>/last.pt`` is rewritten atomically after every epoch and holds everything needed to continue
(model, optimiser, weight averages, method state, RNG states, history, cost meter, elapsed time). Constructing a
Trainer with the same ``out_dir`` and configuration resumes from it; on CPU the resumed run ends with bitwise the same
weights as an uninterrupted one (each epoch's batches and augmentation are drawn from a generator seeded by
(seed, epoch), and the global RNG state is saved with the checkpoint). A directory holding a run with a *different*
configuration is refused rather than overwritten. A NaN/inf loss stops training with
:class:`~robustlib.errors.NonFiniteLossError`; the last good checkpoint stays on disk.
"""
from __future__ import annotations

import contextlib
import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
import torch.nn as nn

from . import distributed as dist
from .attacks import Attack
from .cost import CostMeter
from .data import ArrayDataset, Augment, BatchIterator
from .ema import EMA
from .errors import CheckpointMismatchError, ConfigError, NonFiniteLossError
from .methods.base import Method, Step
from .schedules import Schedule, build_schedule
from .utils import (atomic_save, cpu_bf16_native, fingerprint, load_checkpoint, progress, resolve_device,
                    seed_everything)

CHECKPOINT_FORMAT = 1
AMP_CHOICES = ("auto", "bf16", "off")


@dataclass
class TrainConfig:
    """Everything about optimisation that is not the method itself."""

    epochs: int
    batch_size: int = 128
    lr: float = 0.1                         # used by the default schedule (constant) only
    schedule: dict | Schedule | None = None  # see robustlib.schedules; default constant lr
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    ema: tuple[float, ...] = ()             # EMA decays τ (e.g. (0.9998,))
    augment: Augment | None = field(default_factory=Augment)
    seed: int = 0
    amp: str = "auto"                       # "auto": bf16 on CUDA and on CPUs with native bf16, else fp32
    channels_last: bool | None = None       # None: with bf16 autocast (CUDA, native-bf16 CPUs)
    max_batches: int | None = None          # cap batches per epoch (smoke runs)
    nan_check_every: int = 50               # host sync cadence for the NaN check and the progress bar
    grad_clip: float | None = None
    data_shards: int = 1                    # K: batches as a K-process run sees them (see robustlib.distributed)
    compile: dict | None = None             # torch.compile keyword arguments, e.g. {} or {"mode": "max-autotune"}

    def __post_init__(self):
        if self.epochs < 0:
            raise ConfigError(f"epochs must be ≥ 0, got {self.epochs}")
        if self.amp not in AMP_CHOICES:
            raise ConfigError(f"unknown amp setting {self.amp!r}; valid: {', '.join(AMP_CHOICES)}")
        self.ema = tuple(float(t) for t in self.ema)
        self.schedule = build_schedule(self.schedule or {"name": "constant", "lr": self.lr})

    def describe(self) -> dict:
        d = asdict(self)
        d["schedule"] = self.schedule.describe()
        d["augment"] = asdict(self.augment) if self.augment is not None else None
        return d

    def fingerprint_fields(self) -> dict:
        """What decides the trained weights (not how fast they are computed)."""
        d = self.describe()
        for k in ("compile", "nan_check_every"):
            d.pop(k, None)
        if self.augment is not None and self.augment.cutout:
            d["cutout_version"] = 2   # 2: the authors' 16×16 square (1 drew 15×15): older runs are not reused
        return d


@dataclass
class Selector:
    """Per-epoch checkpoint selection on a hold-out split (never the test set).

    Evaluates clean accuracy and, if ``attack`` is given, robust accuracy of the live model and of every weight
    average after each epoch; the best epoch by ``metric`` is saved per model as ``best-<model>.pt``.
    NuAT and GAT select by I-FGSM-7 accuracy on 1 000 held-out training images.
    """

    data: ArrayDataset
    attack: Attack | None = None
    metric: str = "robust"                  # "robust" or "clean"
    batch_size: int = 500

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        from .evaluation import evaluate
        attacks = {"robust": self.attack} if self.attack is not None else {}
        res = evaluate(model, self.data, attacks, batch_size=self.batch_size, device=device, progress=False)
        return {k: float(v) for k, v in res.accuracies().items()}


@dataclass
class TrainResult:
    model: nn.Module
    emas: dict[str, nn.Module]
    history: pd.DataFrame
    cost: dict[str, float]
    train_seconds: float
    epochs: int
    out_dir: Path | None
    best: dict[str, dict]
    hyperparameters: dict

    @property
    def passes_per_sample(self) -> float:
        return self.cost["total"]

    def models(self) -> dict[str, nn.Module]:
        return {"model": self.model, **self.emas}

    def load_best(self, which: str = "model") -> nn.Module:
        """A copy of ``which`` ("model" or an EMA name such as "ema0.9998") at its selected epoch."""
        import copy
        if which not in self.best:
            raise ConfigError(f"no selected checkpoint for {which!r}; available: {', '.join(self.best) or 'none'} "
                              "(train with a Selector and an out_dir)")
        m = copy.deepcopy(self.models()[which])
        state = load_checkpoint(self.best[which]["path"], map_location=next(m.parameters()).device)
        m.load_state_dict(state["state"])
        return m.eval()


class _Compiled(nn.Module):
    """The model as the method sees it when ``TrainConfig.compile`` is set: forward through ``torch.compile``.

    The cost meter watches this wrapper (its hooks stay outside the compiled graph); state, weight averages and
    checkpoints use the original module.
    """

    def __init__(self, model: nn.Module, kwargs: dict):
        super().__init__()
        self.inner = model
        self._fn = torch.compile(model, **kwargs)

    def forward(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


def _fast_bf16(device: torch.device) -> bool:
    return device.type == "cuda" or (device.type == "cpu" and cpu_bf16_native())


def run_fingerprint(model: nn.Module | str, method: Method, train_data: ArrayDataset, config: TrainConfig,
                    selector: Selector | None = None, shards: int | None = None, extra: dict | None = None) -> str:
    """What decides a run's trained weights, hashed: model (its ``repr``), method and its hyperparameters, training
    data, optimisation config and the selection split. The Trainer refuses to resume a checkpoint with another
    fingerprint, and :mod:`robustlib.experiment` names checkpoint folders by it."""
    shards = config.data_shards if shards is None else shards
    return fingerprint({
        "config": {**config.fingerprint_fields(), "data_shards": shards}, "method": type(method).__name__,
        "hp": method.hyperparameters(),
        "model": model if isinstance(model, str) else repr(model),
        "data": [train_data.name, len(train_data), int(train_data.y.sum())],
        "selector": None if selector is None else [len(selector.data), repr(selector.attack), selector.metric],
        "extra": extra or {}})


def cost_networks(model: nn.Module) -> dict[str, nn.Module]:
    """The networks whose passes the cost meter counts: ``model.cost_networks()`` if defined, else the model."""
    fn = getattr(model, "cost_networks", None)
    return fn() if callable(fn) else {"model": model}


class Trainer:
    def __init__(self, model: nn.Module, method: Method, train_data: ArrayDataset, config: TrainConfig, *,
                 out_dir: str | Path | None = None, device: str | torch.device = "auto",
                 selector: Selector | None = None, progress_bar: bool = True, name: str | None = None,
                 extra_fingerprint: dict | None = None):
        self.device = resolve_device(device)
        distributed = dist.init_from_env(self.device)
        self.rank, self.world = dist.rank(), dist.world_size()
        if distributed:
            self.device = dist.local_device(self.device)
            if config.data_shards not in (1, self.world):
                raise ConfigError(f"data_shards={config.data_shards} does not match the {self.world} processes")
        self.config = config
        self.method = method
        self.selector = selector
        self.name = name or method.name
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress_bar = progress_bar
        seed_everything(config.seed)
        model_repr = repr(model)                # before any BatchNorm conversion, so fingerprints agree
        self.model = model.to(self.device)
        if self.world > 1:
            dist.convert_batchnorm(self.model, self.device)
            dist.broadcast_parameters(self.model)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        shards = self.world if self.world > 1 else config.data_shards
        # a dataset too large for the device (ImageNet) brings its own streaming batch iterator
        make = getattr(train_data, "batch_iterator", None) or functools.partial(BatchIterator, train_data)
        self.batches = make(config.batch_size, device=self.device, shuffle=True, augment=config.augment,
                            drop_last=True, seed=config.seed, shards=shards,
                            rank=self.rank if self.world > 1 else None)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=0.0, momentum=config.momentum,
                                         weight_decay=config.weight_decay, nesterov=config.nesterov)
        self.emas = {e.name: e for e in (EMA(self.model, t) for t in config.ema)}
        self.meter = CostMeter()
        nets = cost_networks(self.model)
        self.step_model = self.model
        if config.compile is not None:
            if set(nets) != {"model"}:
                raise ConfigError("compile= supports single-network models only (this model has cost networks "
                                  f"{', '.join(nets)})")
            self.step_model = _Compiled(self.model, config.compile)
            nets = {"model": self.step_model}
        for net_name, net in nets.items():
            self.meter.watch(net, net_name)
        for e in self.emas.values():
            self.meter.watch(e.model, e.name)
        self.history: list[dict] = []
        self.best: dict[str, dict] = {}
        self.train_seconds = 0.0
        self.epoch = 0                      # epochs completed
        self.global_step = 0
        self.method.setup(self)
        self.fingerprint = run_fingerprint(model_repr, method, train_data, config, selector, shards,
                                           extra_fingerprint)
        if self.out_dir is not None and (self.out_dir / "last.pt").exists():
            self._resume()

    # ----------------------------------------------------------------------------------------------- settings

    @property
    def amp_dtype(self) -> torch.dtype | None:
        amp = self.config.amp
        if amp == "bf16" or (amp == "auto" and _fast_bf16(self.device)):
            return torch.bfloat16
        return None

    @property
    def channels_last(self) -> bool:
        cl = self.config.channels_last
        return self.amp_dtype is not None if cl is None else cl   # None: with bf16 autocast

    @property
    def precision(self) -> dict:
        """The resolved choices, recorded with every result: ``{"amp": "bf16"|"fp32", "channels_last": bool}``."""
        return {"amp": "bf16" if self.amp_dtype is not None else "fp32", "channels_last": bool(self.channels_last)}

    def autocast(self):
        dt = self.amp_dtype
        if dt is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dt)

    @property
    def batches_per_epoch(self) -> int:
        n = len(self.batches)
        return min(n, self.config.max_batches) if self.config.max_batches else n

    # ------------------------------------------------------------------------------------------- checkpoints

    def _rng_state(self) -> dict:
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return rng

    def _state(self, finished: bool) -> dict:
        rng = self._rng_state()
        ranks = dist.all_gather_object(rng) if self.world > 1 else None
        return {
            "format": CHECKPOINT_FORMAT, "fingerprint": self.fingerprint, "name": self.name,
            "config": json.dumps(self.config.describe(), default=str),
            "epoch": self.epoch, "global_step": self.global_step, "finished": finished,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "emas": {k: e.state_dict() for k, e in self.emas.items()},
            "method": self.method.state_dict(), "meter": self.meter.state_dict(),
            "history": json.dumps(self.history), "best": json.dumps(self.best),
            "rng": rng, "train_seconds": self.train_seconds,
            **({"rng_ranks": ranks} if ranks is not None else {}),
        }

    def _save(self, finished: bool = False) -> None:
        if self.out_dir is not None:
            state = self._state(finished)           # collective when distributed: every rank takes part
            if self.rank == 0:
                atomic_save(state, self.out_dir / "last.pt")
            dist.barrier()

    def _resume(self) -> None:
        path = self.out_dir / "last.pt"
        state = load_checkpoint(path, map_location=self.device)
        if state.get("fingerprint") != self.fingerprint:
            raise CheckpointMismatchError(
                f"{path} holds a run with a different configuration (fingerprint {state.get('fingerprint')} ≠ "
                f"{self.fingerprint}). Nothing was overwritten: use another out_dir, or delete that folder to "
                "start this configuration from scratch.")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for k, e in self.emas.items():
            e.load_state_dict(state["emas"][k])
        self.method.load_state_dict(state["method"])
        self.meter.load_state_dict(state["meter"])
        self.history = json.loads(state["history"])
        self.best = json.loads(state["best"])
        self.train_seconds = float(state["train_seconds"])
        self.epoch, self.global_step = int(state["epoch"]), int(state["global_step"])
        rng = state["rng"]
        if self.world > 1 and len(state.get("rng_ranks") or []) == self.world:
            rng = state["rng_ranks"][self.rank]
        torch.set_rng_state(rng["cpu"].cpu())
        if "cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"].cpu(), self.device)

    @property
    def finished(self) -> bool:
        return self.epoch >= self.config.epochs

    # ---------------------------------------------------------------------------------------------- training

    def _set_hyperparameters(self, epoch_float: float) -> tuple[float, float | None]:
        lr, mom = self.config.schedule(epoch_float)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
            if mom is not None:
                g["momentum"] = mom
        return lr, mom

    def train_step(self, x: torch.Tensor, y: torch.Tensor, step: Step) -> tuple[torch.Tensor, dict]:
        """One update (or ``method.replays`` updates) on a batch; returns the detached loss and logs."""
        logs: dict = {}
        loss = None
        for _ in range(self.method.replays):
            with self.meter.active(samples=len(x)), self.autocast():
                out = self.method.loss(self.step_model, x, y, step)
                loss, logs = out if isinstance(out, tuple) else (out, {})
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.world > 1:
                    dist.average_gradients(self.model.parameters())
                self.method.post_backward(self)
            if self.config.grad_clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            for e in self.emas.values():
                e.update(self.model)
        return loss.detach(), logs

    def fit(self) -> TrainResult:
        """Train to ``config.epochs`` (resuming if a checkpoint was found) and return the result."""
        cfg = self.config
        nb = self.batches_per_epoch
        bar = progress(total=cfg.epochs, initial=self.epoch, desc=f"train {self.name}", unit="epoch",
                       disable=not self.progress_bar or self.rank != 0)
        try:
            while self.epoch < cfg.epochs:
                self._run_epoch(self.epoch, nb, bar)
                self.epoch += 1
                self._save(finished=self.finished)
                bar.update(1)
        finally:
            bar.close()
        if self.epoch == cfg.epochs and cfg.epochs == 0:
            self._save(finished=True)
        return self.result()

    def _run_epoch(self, epoch: int, nb: int, bar) -> None:
        cfg = self.config
        self.model.train()
        self.method.start_epoch(self, epoch)
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        log_sums: dict[str, torch.Tensor] = {}
        bad = torch.zeros((), dtype=torch.bool, device=self.device)
        lr = mom = None
        for i, (x, y) in enumerate(self.batches.epoch(epoch)):
            if i >= nb:
                break
            if self.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            lr, mom = self._set_hyperparameters(epoch + i / nb)
            loss, logs = self.train_step(x, y, Step(epoch, i, self.global_step, self))
            self.global_step += 1
            loss_sum += loss.float()
            bad |= ~torch.isfinite(loss)
            for k, v in logs.items():
                log_sums[k] = log_sums.get(k, 0) + v.detach().float()
            if (i + 1) % cfg.nan_check_every == 0 or i + 1 == nb:
                self._check_finite(bad, epoch, i)
                bar.set_postfix(loss=f"{loss_sum.item() / (i + 1):.3f}", lr=f"{lr:.4f}", refresh=False)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.train_seconds += time.perf_counter() - t0
        if self.world > 1:  # the history holds global-batch means, as in a single-process run
            keys = sorted(log_sums)
            dist.all_reduce_mean_([loss_sum] + [log_sums[k] for k in keys])
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "momentum": mom, "precision": self.precision["amp"],
                               "train_loss": loss_sum.item() / max(nb, 1),
                               "train_seconds": self.train_seconds,
                               "passes_per_sample": self.meter.passes_per_sample}
        row.update({k: v.item() / max(nb, 1) for k, v in log_sums.items()})
        row.update({k: v for k, v in self.method.hyperparameters().items() if k.startswith("current_")})
        if self.selector is not None:
            row.update(self._select(epoch))
        self.history.append(row)

    def _check_finite(self, bad: torch.Tensor, epoch: int, i: int) -> None:
        if self.world > 1:  # every rank stops together
            flag = bad.float().reshape(1)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            bad = flag[0] > 0
        if bool(bad):
            where = f"{self.out_dir / 'last.pt'} (after epoch {self.epoch})" if (
                self.out_dir is not None and self.epoch > 0) else "none (no epoch completed)"
            raise NonFiniteLossError(
                f"{self.name}: the training loss became NaN/inf in epoch {epoch + 1} by batch {i + 1}. Training "
                f"stopped; the last good checkpoint is kept: {where}. Lower the learning rate, check the data, "
                "or use amp='off'.")

    def _select(self, epoch: int) -> dict[str, float]:
        out = {}
        sel = self.selector
        for which, model in {"model": self.model, **{k: e.model for k, e in self.emas.items()}}.items():
            metrics = sel.evaluate(model, self.device)
            for k, v in metrics.items():
                out[f"val_{k}" if which == "model" else f"{which}_val_{k}"] = v
            score = metrics[sel.metric if sel.metric in metrics else "clean"]
            if which not in self.best or score > self.best[which]["score"]:
                path = None
                if self.out_dir is not None:
                    path = str(self.out_dir / f"best-{which}.pt")
                    if self.rank == 0:
                        atomic_save({"state": model.state_dict(), "epoch": epoch + 1, "score": score}, path)
                self.best[which] = {"epoch": epoch + 1, "score": score, "path": path}
        self.model.train()
        return out

    def result(self) -> TrainResult:
        return TrainResult(
            model=self.model, emas={k: e.model for k, e in self.emas.items()},
            history=pd.DataFrame(self.history), cost=self.meter.per_sample(), train_seconds=self.train_seconds,
            epochs=self.epoch, out_dir=self.out_dir, best=dict(self.best),
            hyperparameters={"method": self.method.hyperparameters(), "train": self.config.describe(),
                             "resolved": self.precision})


def train(model: nn.Module, method: Method, data: ArrayDataset, config: TrainConfig, **kwargs) -> TrainResult:
    """Shorthand for ``Trainer(model, method, data, config, **kwargs).fit()``."""
    return Trainer(model, method, data, config, **kwargs).fit()
