"""Clean and robust accuracy under an attack suite, per image, with confidence intervals.

:func:`evaluate` runs every attack on the first ``n`` images and keeps a boolean per image and metric (True =
classified correctly, clean *and* under that attack). From that table it derives the accuracies, their 95 % Wilson
intervals, and the per-image worst case over all attacks (``worst``: an image counts only if it survives every
attack). Results come as a tidy pandas DataFrame and as JSON-ready dicts.

**Batch-dependent models.** A model whose eval-mode prediction for an image depends on the other images of its batch
(:func:`batch_dependent`; e.g. ABNN with batch-global μ/σ) is a different function in every batch composition, so an
adversarial image is only meaningful in the composition it was crafted in. For such a model :func:`evaluate`

* scores every attack's adversarial batch in the composition the attack crafted it in: the white-box attacks craft
  on the whole evaluation batch and are scored on that same batch (PGD's ``record`` snapshots are read as the
  iterates after ``s`` steps of each restart, from one set of random starts, each scored as the batch it is);
  AutoAttack, which attacks shrinking sub-batches, attacks and scores the model's batch-size-1 function instead
  (see :class:`~robustlib.attacks.AutoAttack`);
* adds a batch-size-1 column ``<key>@b1`` per metric (and ``clean@b1``, ``worst@b1``): the same adversarial images,
  each classified alone by :func:`batch_size_one` of the model;
* records in :attr:`EvalResult.meta` that the model is batch-dependent and how each column was scored
  (``meta["scoring"]``).

``worst`` is then the per-image worst case over the columns scored as crafted, ``worst@b1`` over the ``@b1`` ones.
Batch-independent models get exactly the columns, values and meta they always got.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn

from .attacks import PGD, Attack, predict
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


B1 = "@b1"   # suffix of the batch-size-1 columns of a batch-dependent model


def batch_dependent(model: nn.Module) -> bool:
    """Whether ``model``'s eval-mode prediction for an image can depend on the other images of its batch.

    A module declares it with a ``batch_dependent`` attribute (True for ABNN's adaptive BN with batch-global μ/σ);
    the outermost module of a subtree that declares one decides for that subtree (so a view that runs its inner model
    differently, e.g. with per-sample statistics, can say False), and undeclared modules are batch independent."""
    flag = getattr(model, "batch_dependent", None)
    if flag is not None:
        return bool(flag)
    return any(batch_dependent(c) for c in model.children())


class OneAtATime(nn.Module):
    """``model`` run on one image at a time: the exact batch-size-1 function of any model (slow)."""

    batch_dependent = False

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return torch.cat([self.model(x[i:i + 1]) for i in range(len(x))])


def batch_size_one(model: nn.Module) -> nn.Module:
    """``model``'s batch-size-1 function as a batch-independent module: per image, what ``model`` predicts for that
    image alone. ``model`` itself when it is not :func:`batch_dependent`; a model's own ``batch_size_one()`` method
    when it has one (an exact, batched equivalent: a batch-global ABNN's per-sample-statistics view); otherwise
    :class:`OneAtATime`."""
    if not batch_dependent(model):
        return model
    own = getattr(model, "batch_size_one", None)
    equivalent = own() if callable(own) else OneAtATime(model)
    if batch_dependent(equivalent):
        raise ConfigError(f"{type(model).__name__}.batch_size_one() returned a batch-dependent module")
    return equivalent


def _rng_state(dev: torch.device):
    return torch.get_rng_state(), (torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None)


def _set_rng_state(state, dev: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], dev)


def _pgd_snapshots(atk: PGD, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """PGD's ``record`` snapshots as adversarial batches: for each key, the iterate after its step count in every
    restart, all snapshots from the same random starts (the snapshots of one run), each scored as the batch it is."""
    dev = x.device
    clean = predict(model, x) == y
    start = _rng_state(dev)
    flags, advs, end = {}, {}, None
    for key, steps in sorted(atk.record.items(), key=lambda kv: kv[1]):
        _set_rng_state(start, dev)
        one = copy.copy(atk)
        one.steps, one.restarts, one.record = steps, 1, {}
        advs[key] = [one.perturb(model, x, y) for _ in range(atk.restarts)]
        ok = clean.clone()
        for x_adv in advs[key]:
            ok &= predict(model, x_adv) == y
        flags[key] = ok
        end = _rng_state(dev)
    if end is not None:
        _set_rng_state(end, dev)   # continue from where the longest snapshot left the generators
    return {k: flags[k] for k in atk.record}, {k: advs[k] for k in atk.record}


def _crafted(atk: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """On a batch-dependent model: per key, the flags scored in the composition the attack crafted its adversarial
    batch in, and the adversarial batches behind them (one per restart; None where they cannot be had)."""
    own = getattr(atk, "flags_and_adversarials", None)
    if callable(own):
        return own(model, x, y)
    if isinstance(atk, PGD) and atk.record:
        return _pgd_snapshots(atk, model, x, y)
    if type(atk).robust_flags is Attack.robust_flags or type(atk).robust_flags is PGD.robust_flags:
        clean = predict(model, x) == y
        x_adv = atk.perturb(model, x, y)
        return {atk.name: clean & (predict(model, x_adv) == y)}, {atk.name: [x_adv]}
    return atk.robust_flags(model, x, y), None


def _scoring(atk: Attack, model: nn.Module, batch_size: int) -> str:
    own = getattr(atk, "scoring", None)
    if callable(own):
        return own(model)
    return f"in the evaluation batch (≤ {batch_size} images) the attack crafted it in"


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
    :class:`~robustlib.errors.NotEnoughDataError`. A :func:`batch_dependent` model is scored as the module docstring
    says (columns as crafted, ``@b1`` columns, ``meta["scoring"]``).
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
    dependent = batch_dependent(model)
    alone = batch_size_one(model).to(dev) if dependent else None
    cols: dict[str, list[torch.Tensor]] = {"clean": []}
    cols1: dict[str, list[torch.Tensor]] = {"clean" + B1: []}
    seconds: dict[str, float] = {"clean": 0.0}
    scoring: dict[str, str] = {}
    for xb, yb in _progress(batches, total=total, desc=desc, unit="batch", disable=not progress):
        t0 = time.perf_counter()
        cols["clean"].append((predict(model, xb) == yb).cpu())
        seconds["clean"] += _elapsed(t0, dev)
        if dependent:
            t0 = time.perf_counter()
            clean1 = predict(alone, xb) == yb
            cols1["clean" + B1].append(clean1.cpu())
            seconds["clean" + B1] = seconds.get("clean" + B1, 0.0) + _elapsed(t0, dev)
        for key, atk in named.items():
            t0 = time.perf_counter()
            if dependent:
                flags, advs = _crafted(atk, model, xb, yb)
            else:
                flags, advs = atk.robust_flags(model, xb, yb), None
            dt = _elapsed(t0, dev)
            if tuple(flags) == (atk.name,):  # an attack's default key takes its mapping key; explicit keys stay
                flags = {key: flags[atk.name]}
                advs = None if advs is None else {key: advs[atk.name]}
            for k, f in flags.items():
                cols.setdefault(k, []).append(f.cpu())
                seconds[k] = seconds.get(k, 0.0) + dt / len(flags)
                if dependent:
                    scoring.setdefault(k, _scoring(atk, model, batch_size))
            if not dependent:
                continue
            for k in flags:
                if advs is None or k not in advs:
                    scoring.setdefault(k + B1, "not available: the attack does not give its adversarial images")
                    continue
                t0 = time.perf_counter()
                ok = clean1.clone()
                for x_adv in advs[k]:
                    ok &= predict(alone, x_adv) == yb
                cols1.setdefault(k + B1, []).append(ok.cpu())
                seconds[k + B1] = seconds.get(k + B1, 0.0) + _elapsed(t0, dev)
                scoring.setdefault(k + B1, "each adversarial image alone (batch size 1)")
    table = pd.DataFrame({k: torch.cat(v).numpy() for k, v in cols.items()})
    table["worst"] = table.all(axis=1)
    if dependent:
        b1 = pd.DataFrame({k: torch.cat(v).numpy() for k, v in cols1.items()})
        table = pd.concat([table, b1], axis=1)
        table["worst" + B1] = b1.all(axis=1)
        meta = {**meta, "batch_dependent": True, "batch_size_one": type(alone).__name__,
                "scoring": {"clean": f"in evaluation batches of ≤ {batch_size} images", **scoring,
                            "clean" + B1: "each image alone (batch size 1)",
                            "worst": "per image, every column scored as crafted",
                            "worst" + B1: "per image, every @b1 column"}}
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
