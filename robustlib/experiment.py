"""One experiment layer under every chapter: a run specification, training into a folder named by the run's
fingerprint, one cached evaluation, one parts → chapter gather, one time model, one cost measurement.

A chapter keeps its recipes as a literal table (rows of registered method names and hyperparameters, each with its
source) and turns each row into a :class:`RunSpec`. Everything after that is shared:

* :func:`train` trains a spec (or reopens the finished run) in ``<checkpoints>/<alias>-<fingerprint>``, the
  fingerprint being the one the Trainer computes from model, method, hyperparameters, data, schedule and selection
  split. Change one hyperparameter and the run lands in a new folder; the old one stays. Two chapters that ask for
  the same spec share one folder, so nothing is trained twice.
* :func:`evaluate_cached` evaluates one model of a run (the live model or a weight average, at its hold-out-selected
  epoch) and stores the per-image flags as ``eval-<fingerprint>.json`` beside the checkpoint; the key covers the
  checkpoint's fingerprint and selected epoch, the attacks, the test images, the batch size, the seed and
  :data:`EVAL_VERSION`. A second call returns the stored flags.
* :func:`cached` does the same for any other per-image evaluation (minimum distances, bounds).
* :func:`gather` copies the rows of a paper's part results into the chapter's report.
* :func:`estimate_seconds` is the one time model: the method's derived passes (``Method.derived_passes``) × training
  images × epochs × measured seconds per pass, plus evaluation.
* :func:`measure_cost` runs a few batches and reads the cost meter (passes per sample, seconds per batch).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

from . import results
from .attacks import Attack
from .data import ArrayDataset
from .errors import ConfigError
from .evaluation import EvalResult, evaluate
from .methods import METHODS, Method
from .models import MODELS
from .training import Selector, TrainConfig, Trainer, TrainResult, run_fingerprint
from .utils import atomic_write_text, fingerprint, seed_everything

EVAL_VERSION = 1        # bump when evaluation code changes in a way that changes flags (invalidates every cache)


# ------------------------------------------------------------------------------------------------- the spec


@dataclass
class RunSpec:
    """One trained model of a chapter: which method (registered name + hyperparameters) on which model, data and
    optimisation, selected how, giving which table rows.

    ``rows`` maps a table row label to the model that gives it: ``"model"`` (the live network) or a weight average
    (``"ema0.9998"``). ``build`` overrides the registry for models that are not registered (e.g. torchvision's).
    """

    alias: str                                  # readable name of the checkpoint folder, e.g. "nuat-cifar10-nuat"
    label: str                                  # the paper's label of the method
    method: str                                 # registered method name (METHODS.names())
    hp: dict                                    # the method's keyword arguments
    model: str                                  # registered model name (MODELS.names())
    model_kw: dict
    config: TrainConfig
    rows: dict[str, str] = field(default_factory=lambda: {})
    selector: str | None = None                 # None, "clean", or "robust" (needs a selection attack)
    source: str = ""                            # where the recipe comes from
    note: str = ""
    extra: dict = field(default_factory=dict)   # chapter facts carried along (paper epochs, part, dataset, ...)
    build: Callable[[], nn.Module] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        if self.method not in METHODS:
            METHODS.get(self.method)             # raises UnknownNameError listing the valid names
        if self.build is None and self.model not in MODELS:
            MODELS.get(self.model)
        if not self.rows:
            self.rows = {self.label: "model"}
        if not re.fullmatch(r"[A-Za-z0-9._-]+", self.alias):
            raise ConfigError(f"run alias {self.alias!r} must use letters, digits, '.', '_' or '-' (it names a folder)")

    def make_method(self) -> Method:
        return METHODS.build(self.method, **self.hp)

    def make_model(self) -> nn.Module:
        return self.build() if self.build is not None else MODELS.build(self.model, **self.model_kw)

    def replace(self, **changes) -> "RunSpec":
        """A copy with fields changed; ``hp={...}`` is merged into the hyperparameters, not replaced."""
        hp = {**self.hp, **changes.pop("hp", {})}
        return dataclasses.replace(self, hp=hp, **changes)

    def describe(self) -> dict:
        return {"label": self.label, "method": self.method, "hp": self.hp, "model": self.model,
                "model_kw": self.model_kw, "train": self.config.describe(), "selector": self.selector,
                "source": self.source}


def fmt_value(v) -> str:
    """A hyperparameter as a reader writes it: 0.0313… → "8/255", (100, 150) → "100, 150"."""
    if isinstance(v, float) and v > 0 and abs(v * 255 - round(v * 255)) < 1e-9 and v < 1:
        return f"{round(v * 255)}/255"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_value(i) for i in v)
    if isinstance(v, dict):
        return ", ".join(f"{k} = {fmt_value(i)}" for k, i in v.items()) or "—"
    return f"{v:g}" if isinstance(v, float) else str(v)


def recipe_frame(recipes: Mapping[str, Mapping]) -> pd.DataFrame:
    """A chapter's literal RECIPES table as the paper's hyperparameter table (one row per trained model)."""
    return pd.DataFrame([{"row": k, **{c: fmt_value(v) for c, v in r.items()}} for k, r in recipes.items()]
                        ).set_index("row")


def slug(text: str) -> str:
    """A folder-safe lower-case name: "cifar10/NuAT-WA" → "cifar10-nuat-wa"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower().replace("+", "p")).strip("-")


# ------------------------------------------------------------------------------------------------ training


@dataclass
class Trained:
    """A finished (or reopened) run: the spec, the Trainer's result and its checkpoint folder."""

    spec: RunSpec
    result: TrainResult
    folder: Path
    fingerprint: str

    def model(self, which: str = "model") -> nn.Module:
        """``which`` ("model" or an EMA name) at its hold-out-selected epoch when there is one, else as trained."""
        if which in self.result.best:
            return self.result.load_best(which)
        models = self.result.models()
        if which not in models:
            raise ConfigError(f"run {self.spec.alias} has no model {which!r}; available: {', '.join(models)}")
        return models[which].eval()

    # the training record, as on a TrainResult
    history = property(lambda self: self.result.history)
    epochs = property(lambda self: self.result.epochs)
    train_seconds = property(lambda self: self.result.train_seconds)
    passes_per_sample = property(lambda self: self.result.passes_per_sample)
    cost = property(lambda self: self.result.cost)

    def selected_epoch(self, which: str = "model") -> int | None:
        return self.result.best.get(which, {}).get("epoch")

    @property
    def cost_passes(self) -> float:
        """Measured N per training sample per epoch (each replay of a minibatch counted, as Free-AT's cost is)."""
        return self.result.cost["total"] * self.spec.make_method().replays


def checkpoint_folder(root: str | Path, spec: RunSpec, fp: str) -> Path:
    return Path(root) / f"{spec.alias}-{fp}"


def train(spec: RunSpec, data: ArrayDataset, root: str | Path, *, selector: Selector | None = None,
          device: str | torch.device = "cpu", progress: bool = True) -> Trained:
    """Train ``spec`` on ``data`` — or reopen the finished run — in ``<root>/<alias>-<fingerprint>``.

    An interrupted run resumes from its last epoch. With ``ROBUSTLIB_GPUS`` = K > 1 the training runs on K processes
    through ``torchrun`` (:mod:`robustlib.launch`) and is reopened here as the equivalent single-process run.
    """
    if spec.selector == "robust" and (selector is None or selector.attack is None):
        raise ConfigError(f"run {spec.alias} selects by robust accuracy: pass a Selector with an attack")
    config = spec.config
    gpus = int(os.environ.get("ROBUSTLIB_GPUS", "1"))
    if gpus > 1:
        config = dataclasses.replace(config, data_shards=gpus)
    seed_everything(config.seed)
    method = spec.make_method()
    fp = run_fingerprint(spec.make_model(), method, data, config, selector)
    folder = checkpoint_folder(root, spec, fp)
    if not (folder / "last.pt").exists():  # the same run under another chapter's alias: reuse it, train nothing
        folder = next((p for p in sorted(Path(root).glob(f"*-{fp}")) if (p / "last.pt").exists()), folder)
    if gpus > 1 and not (folder / "last.pt").exists():
        from .launch import spawn
        seed_everything(config.seed)
        config = spawn(spec.make_model(), spec.make_method(), data, spec.config, folder, gpus, str(device),
                       selector, spec.alias)
    seed_everything(config.seed)
    trainer = Trainer(spec.make_model(), spec.make_method(), data, config, out_dir=folder, device=device,
                      selector=selector, progress_bar=progress, name=spec.alias)
    if trainer.fingerprint != fp:  # pragma: no cover - a method whose setup() changes its hyperparameters
        raise ConfigError(f"run {spec.alias}: the fingerprint changed while building the Trainer")
    res = trainer.fit()
    if not (folder / "spec.json").exists():   # the first alias that trained it names it
        atomic_write_text(json.dumps({"alias": spec.alias, "fingerprint": fp, **spec.describe()}, indent=1,
                                     default=str), folder / "spec.json")
    return Trained(spec, res, folder, fp)


# -------------------------------------------------------------------------------------------- evaluation


def _attack_key(attacks: Mapping[str, Attack]) -> list:
    return [[k, type(a).__name__, repr(a)] for k, a in sorted(attacks.items())]


def eval_fingerprint(model_key: Any, attacks: Mapping[str, Attack], data: ArrayDataset, n: int | None,
                     batch_size: int, seed: int) -> str:
    ds = data.head(n) if n is not None else data
    return fingerprint({"model": model_key, "attacks": _attack_key(attacks), "data": [ds.name, ds.split, len(ds),
                        int(ds.y.sum())], "batch": batch_size, "seed": seed, "version": EVAL_VERSION})


def evaluate_cached(trained: Trained | None, attacks: Mapping[str, Attack], data: ArrayDataset, *,
                    which: str = "model", model: nn.Module | None = None, cache_dir: str | Path | None = None,
                    model_key: Any = None, n: int | None = None, batch_size: int = 500, seed: int = 0,
                    device: str | torch.device = "cpu", progress: bool = True, desc: str | None = None,
                    tag: Any = None) -> EvalResult:
    """Evaluate one model under ``attacks`` (per-image flags, see :func:`robustlib.evaluation.evaluate`), cached.

    For a trained run the model is ``trained.model(which)`` and the cache lives in the run's folder, keyed by the
    run's fingerprint, ``which`` and its selected epoch. For any other model pass ``model``, a ``cache_dir`` and a
    ``model_key`` that identifies its weights (or no cache_dir: no cache). ``tag`` distinguishes evaluations of the
    same weights run differently (a BN route, a wrapper); pass ``model`` then. The seed is set before the evaluation,
    so a cached and a fresh evaluation give the same flags.
    """
    if trained is not None:
        model_key = [trained.fingerprint, which, trained.selected_epoch(which), trained.result.epochs]
        cache_dir = trained.folder
    if tag is not None:   # the same weights evaluated another way (e.g. through AdvProp's auxiliary BNs)
        model_key = [model_key, tag]
    path = None
    if cache_dir is not None:
        if model_key is None:
            raise ConfigError("evaluate_cached with a cache_dir needs a model_key that identifies the weights")
        path = Path(cache_dir) / f"eval-{eval_fingerprint(model_key, attacks, data, n, batch_size, seed)}.json"
        if path.exists():
            return load_eval(path)
    if model is None:
        if trained is None:
            raise ConfigError("evaluate_cached needs a trained run or a model")
        model = trained.model(which)
    torch.manual_seed(seed)
    res = evaluate(model, data, dict(attacks), n=n, batch_size=batch_size, device=device, progress=progress,
                   desc=desc or (trained.spec.label if trained is not None else "evaluate"))
    if path is not None:
        save_eval(res, path)
    return res


def cached(trained: Trained | None, what: Any, compute: Callable[[], dict], *, cache_dir: str | Path | None = None,
           model_key: Any = None, which: str = "model") -> dict:
    """Any other per-image evaluation of a model (minimum distances, bounds, …), cached in the same place and way
    as :func:`evaluate_cached`: ``compute()`` returns a dict of JSON-able values or NumPy arrays, stored under a key
    made of the model's identity (the run's fingerprint, ``which``, its selected epoch) and ``what`` (a JSON-able
    description of the evaluation: its attack budgets, images, seed). Arrays come back as NumPy arrays."""
    if trained is not None:
        model_key = [trained.fingerprint, which, trained.selected_epoch(which), trained.result.epochs]
        cache_dir = trained.folder
    if cache_dir is None:
        return compute()
    if model_key is None:
        raise ConfigError("cached() with a cache_dir needs a model_key that identifies the weights")
    path = Path(cache_dir) / f"eval-{fingerprint({'model': model_key, 'what': what, 'version': EVAL_VERSION})}.json"
    if path.exists():
        doc = json.loads(path.read_text())
        return {k: np.asarray(v["array"], dtype=v["dtype"]) if isinstance(v, dict) and "array" in v else v
                for k, v in doc["values"].items()}
    out = compute()
    values = {k: {"array": np.asarray(v).tolist(), "dtype": str(np.asarray(v).dtype)}
              if isinstance(v, (np.ndarray, torch.Tensor)) else v for k, v in out.items()}
    atomic_write_text(json.dumps({"version": EVAL_VERSION, "what": what, "values": values}, default=str), path)
    return out


def save_eval(res: EvalResult, path: str | Path) -> None:
    """One format for every cached evaluation: JSON with one '0'/'1' string per metric (image order kept)."""
    doc = {"version": EVAL_VERSION, "n": res.n, "seconds": res.seconds, "meta": res.meta,
           "flags": {k: "".join("1" if v else "0" for v in res.flags[k].to_numpy()) for k in res.flags.columns}}
    atomic_write_text(json.dumps(doc, default=str), Path(path))


def load_eval(path: str | Path) -> EvalResult:
    doc = json.loads(Path(path).read_text())
    flags = pd.DataFrame({k: np.frombuffer(v.encode(), dtype=np.uint8) == ord("1") for k, v in doc["flags"].items()})
    return EvalResult(flags, dict(doc.get("seconds") or {}), dict(doc.get("meta") or {}, cached=str(path)))


# ------------------------------------------------------------------------------------------------- gather


def gather(rep, parts: Mapping[str, str], out_dir: str | Path | None = None) -> pd.DataFrame:
    """Copy the rows of every part's results file ``<out_dir>/<paper>__<part>.json`` of the same profile into the
    chapter's report ``rep`` (a part's row replaces a row with the same table and method); returns what was found.

    ``parts`` maps a part name to its notebook's stem.
    """
    out_dir = Path(out_dir or rep.out_dir)
    found = []
    for part, nb in parts.items():
        path = out_dir / f"{rep.paper}__{part}.json"
        status = "missing"
        if path.exists():
            doc = results.load(path)
            if doc["profile"] != rep.profile:
                status = f"other profile ({doc['profile']})"
            else:
                for row in doc["rows"]:
                    rep.rows = [r for r in rep.rows if (r["table"], r["method"]) != (row["table"], row["method"])]
                    rep.rows.append(row)
                status = f"{len(doc['rows'])} rows"
                rep.extra.setdefault("parts", {})[part] = {"wall_s": doc.get("wall_s"), "rows": len(doc["rows"])}
        found.append({"part": part, "notebook": nb + ".ipynb", "results": path.name, "status": status})
    return pd.DataFrame(found).set_index("part")


# --------------------------------------------------------------------------------------------- time model


def estimate_seconds(spec: RunSpec, n_train: int, seconds_per_pass: float, *, eval_seconds: float = 0.0) -> float:
    """Planned wall time of ``spec``: derived passes per sample (the method's own statement) × training images per
    epoch × epochs × seconds per pass (measured for this model and machine), plus ``eval_seconds``."""
    method = spec.make_method()
    passes = method.derived_passes()
    if passes is None:
        raise ConfigError(f"{type(method).__name__} does not state its cost (derived_passes)")
    per_epoch = min(n_train // spec.config.batch_size, spec.config.max_batches or 10 ** 12) * spec.config.batch_size
    return passes * per_epoch * spec.config.epochs * seconds_per_pass + eval_seconds


def plan(specs: Sequence[RunSpec], n_train: int, seconds_per_pass: Mapping[str, float] | float,
         eval_seconds: Mapping[str, float] | float = 0.0) -> pd.DataFrame:
    """The plan of a part or chapter: one row per spec with epochs, derived N and estimated minutes."""
    rows = []
    for sp in specs:
        spp = seconds_per_pass if isinstance(seconds_per_pass, (int, float)) else seconds_per_pass[sp.alias]
        ev = eval_seconds if isinstance(eval_seconds, (int, float)) else eval_seconds.get(sp.alias, 0.0)
        m = sp.make_method()
        rows.append({"run": sp.alias, "label": sp.label, "epochs": sp.config.epochs, "batch": sp.config.batch_size,
                     "derived N": m.derived_passes(), "minutes": estimate_seconds(sp, n_train, spp, eval_seconds=ev)
                     / 60})
    return pd.DataFrame(rows).set_index("run")


def measure_cost(spec: RunSpec, data: ArrayDataset, *, batches: int = 2, device: str | torch.device = "cpu",
                 warmup: bool = True) -> dict[str, float]:
    """Train ``batches`` batches of ``spec`` (no checkpoint) and read the cost meter: measured N per sample, the
    method's derived N, and seconds per batch after one untimed warm-up batch."""
    runs = []
    for nb in ((1, batches) if warmup else (batches,)):
        cfg = dataclasses.replace(spec.config, epochs=1, max_batches=nb, ema=())
        seed_everything(cfg.seed)
        runs.append(Trainer(spec.make_model(), spec.make_method(), data, cfg, device=device, progress_bar=False)
                    .fit())
    res = runs[-1]
    method = spec.make_method()
    return {"measured_N": res.cost["total"] * method.replays, "derived_N": method.derived_passes(),
            "seconds_per_batch": res.train_seconds / batches, "batch_size": spec.config.batch_size}
