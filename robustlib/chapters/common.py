"""What every chapter shares: run settings from the notebook's parameters, profile checks and data per profile
(training, evaluation and reuse are :mod:`robustlib.experiment`'s).

Profiles:

* ``smoke`` — CPU, about a minute per notebook: tiny versions of the paper architectures, a few thousand training
  images, ~100 test images. For tests and a first look; its numbers mean nothing.
* ``quick`` — one GPU, at most 10 minutes per notebook on an H200: real CIFAR-10/MNIST, shortened schedules (each
  chapter states how), evaluation on the first 1 000 test images with the paper's attack suite.
* ``cpu`` — two CPU cores overnight (each notebook ≤ 45 minutes, the whole book ≤ 10 hours): real datasets, the
  papers' architectures at reduced width, schedules compressed by each chapter's rule, the attack suite where it
  fits; compare differences between rows (paired intervals), not absolute numbers.
* ``paper`` — the paper's full protocol (schedules, epochs, architectures); evaluation on every test image available
  (only the first 1 000 CIFAR-10 test images exist in this project's copy).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import data_root, holdout_split, load_dataset
from ..errors import ConfigError, UnknownNameError
from ..results import PROFILES  # defined once, beside the results schema that records it
from ..utils import resolve_device, seed_everything


class ProfileValues:
    """Mixin for a chapter's Config dataclass: the values of its profile table as attributes (``cfg.n_test``),
    read from the field named by ``_profile_field``."""

    _profile_field = "profile"

    def __getattr__(self, key):
        try:
            return self.__dict__[type(self)._profile_field][key]
        except KeyError:
            raise AttributeError(key) from None


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise UnknownNameError("profile", profile, PROFILES)
    return profile


@dataclass
class RunSettings:
    """The notebook's parameters, resolved: profile, seed, device, data folder, output folder."""

    profile: str
    seed: int
    device: torch.device
    data_dir: Path
    out_dir: Path

    @property
    def checkpoint_dir(self) -> Path:
        """Where trained models of this run live (``$ROBUSTLIB_CHECKPOINTS`` overrides ``<out_dir>/checkpoints``).

        Chapters that train the same configuration (e.g. the comparison chapter and a paper chapter) share it: the
        Trainer finds the finished checkpoint and trains nothing.
        """
        env = os.environ.get("ROBUSTLIB_CHECKPOINTS")
        return Path(env) / self.profile if env else self.out_dir / "checkpoints"

    @property
    def smoke(self) -> bool:
        return self.profile == "smoke"


def settings(profile: str = "smoke", seed: int = 0, device: str = "auto", data_dir: str | None = None,
             out_dir: str | None = None) -> RunSettings:
    """Resolve a notebook's parameters cell (see the book's protocol chapter)."""
    check_profile(profile)
    dev = resolve_device(device)
    if profile == "smoke":
        torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    out = Path(out_dir or os.environ.get("ROBUSTLIB_OUT") or default_out_dir()).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return RunSettings(profile, int(seed), dev, data_root(data_dir).expanduser().resolve(), out)


def repo_root() -> Path:
    """The checkout robustlib was installed from (editable install), else the current folder."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").exists() and (here / "notebooks").exists() else Path.cwd()


def default_out_dir() -> Path:
    """Where a notebook run interactively writes: ``<repo>/runs/interactive/results`` (git-ignored)."""
    return repo_root() / "runs" / "interactive" / "results"


_NO_VALUE = object()


def by_profile(profile: str, smoke, quick, paper, cpu=_NO_VALUE):
    """Pick the value for ``profile``; a chapter that defines no ``cpu`` value refuses the cpu profile clearly."""
    check_profile(profile)
    if profile == "cpu":
        if cpu is _NO_VALUE:
            raise ConfigError("this chapter has no 'cpu' profile yet; valid here: smoke, quick, paper")
        return cpu
    return {"smoke": smoke, "quick": quick, "paper": paper}[profile]


def cifar10_splits(s: RunSettings, n_train: int | None, n_test: int | None, holdout_per_class: int = 0):
    """(train, val | None, test) CIFAR-10 for a run: the first ``n_train`` training images (all when None), an
    optional per-class hold-out split taken from them, and the first ``n_test`` test images."""
    train = load_dataset("cifar10", "train", s.data_dir, limit=n_train)
    val = None
    if holdout_per_class:
        train, val = holdout_split(train, holdout_per_class)
    test = load_dataset("cifar10", "test", s.data_dir).head(n_test)
    return train, val, test
