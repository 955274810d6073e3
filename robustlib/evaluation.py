"""Clean and robust accuracy under an attack suite, per image, with confidence intervals.

:func:`evaluate` runs every attack on the first ``n`` images and keeps a boolean per image and metric (True =
classified correctly, clean *and* under that attack). From that table it derives the accuracies, their 95 % Wilson
intervals, and the per-image worst case over all attacks (``worst``: an image counts only if it survives every
attack). Results come as a tidy pandas DataFrame and as JSON-ready dicts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn

from .attacks import Attack, predict
from .data import ArrayDataset, iterate
from .errors import ConfigError, NotEnoughDataError
from .stats import wilson_interval
from .utils import progress as _progress, resolve_device


@dataclass
class EvalResult:
    flags: pd.DataFrame                 # one bool column per metric (``clean``, attack keys, ``worst``)
    seconds: dict[str, float] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.flags)

    def accuracies(self) -> dict[str, float]:
        """Accuracy in percent per metric."""
        return {k: 100.0 * float(self.flags[k].mean()) for k in self.flags.columns}

    def table(self) -> pd.DataFrame:
        rows = []
        for k in self.flags.columns:
            c = int(self.flags[k].sum())
            lo, hi = wilson_interval(c, self.n)
            rows.append({"metric": k, "accuracy": 100.0 * c / max(self.n, 1), "ci_low": lo, "ci_high": hi,
                         "n": self.n, "seconds": self.seconds.get(k)})
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {"n": self.n, "accuracy": self.accuracies(),
                "ci": {r["metric"]: [r["ci_low"], r["ci_high"]] for r in self.table().to_dict("records")},
                "seconds": self.seconds, **self.meta}

    def __getitem__(self, key: str) -> float:
        return self.accuracies()[key]


def _named_attacks(attacks: Mapping[str, Attack] | Sequence[Attack] | None) -> dict[str, Attack]:
    if attacks is None:
        return {}
    if isinstance(attacks, Mapping):
        return dict(attacks)
    return {a.name: a for a in attacks}


def evaluate(model: nn.Module, data: ArrayDataset | tuple[torch.Tensor, torch.Tensor],
             attacks: Mapping[str, Attack] | Sequence[Attack] | None = None, *, n: int | None = None,
             batch_size: int = 500, device: str | torch.device = "auto", progress: bool = True,
             desc: str = "evaluate") -> EvalResult:
    """Evaluate ``model`` on the first ``n`` images of ``data`` under ``attacks``.

    ``attacks`` maps a metric key to an attack. An attack that returns its default key (``atk.name``) is stored under
    the mapping key; an attack with explicit keys (PGD's ``record`` snapshots, even a single one) keeps them. Asking for more images than ``data`` holds raises
    :class:`~robustlib.errors.NotEnoughDataError`.
    """
    dev = resolve_device(device)
    if isinstance(data, ArrayDataset):
        ds = data.head(n)
        batches, total, meta = iterate(ds, batch_size, dev), None, {"dataset": ds.name, "split": ds.split}
        total = len(batches)
    else:
        x, y = data
        if n is not None:
            if n > len(x):
                raise NotEnoughDataError(f"asked for {n} images but only {len(x)} were given")
            x, y = x[:n], y[:n]
        batches = [(x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)) for i in range(0, len(x), batch_size)]
        total, meta = len(batches), {"dataset": "tensors"}
    named = _named_attacks(attacks)
    for key, atk in named.items():
        if not isinstance(atk, Attack):
            raise ConfigError(f"attack {key!r} is a {type(atk).__name__}, not a robustlib Attack")
    model = model.to(dev)
    cols: dict[str, list[torch.Tensor]] = {"clean": []}
    seconds: dict[str, float] = {"clean": 0.0}
    for xb, yb in _progress(batches, total=total, desc=desc, unit="batch", disable=not progress):
        t0 = time.perf_counter()
        cols["clean"].append((predict(model, xb) == yb).cpu())
        seconds["clean"] += _elapsed(t0, dev)
        for key, atk in named.items():
            t0 = time.perf_counter()
            flags = atk.robust_flags(model, xb, yb)
            dt = _elapsed(t0, dev)
            if tuple(flags) == (atk.name,):  # an attack's default key takes its mapping key; explicit keys stay
                flags = {key: flags[atk.name]}
            for k, f in flags.items():
                cols.setdefault(k, []).append(f.cpu())
                seconds[k] = seconds.get(k, 0.0) + dt / len(flags)
    table = pd.DataFrame({k: torch.cat(v).numpy() for k, v in cols.items()})
    table["worst"] = table.all(axis=1)
    return EvalResult(table, seconds, meta)


def _elapsed(t0: float, dev: torch.device) -> float:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, attack: Attack | None = None,
             batch_size: int = 500) -> float:
    """Accuracy in percent of ``model`` on tensors ``(x, y)``, optionally under ``attack``."""
    res = evaluate(model, (x, y), {"adv": attack} if attack is not None else None, batch_size=batch_size,
                   device=x.device, progress=False)
    return res.accuracies()["adv" if attack is not None else "clean"]
