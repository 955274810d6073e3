"""Training the ABNN chapter's RECIPES rows through the experiment layer: the frozen substitute, the CIFAR-10 rows,
the public :func:`trained` for other chapters, and the part notebooks' training rows."""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from ... import experiment as ex
from ...data import ArrayDataset, load_dataset
from ...errors import ConfigError, UnknownNameError
from ...methods.abnn import ABNNNet, freeze
from ...models import MODELS, num_parameters
from ...models.imagenet import load_torchvision_weights
from ...report import Report
from ...utils import fingerprint
from ..common import RunSettings, cifar10_splits
from .recipes import ENV_SUBSTITUTE, PAPER, RECIPES, VARIANT_ROWS, Config, from_settings


def report(cfg: Config, part: str | None = None) -> Report:
    return Report(PAPER, cfg.s.profile, cfg.s.out_dir, "cifar10", cfg.n_test, cfg.s.seed, str(cfg.s.device), part=part)


def load_data(cfg: Config):
    """(train, test): the first ``n_train`` CIFAR-10 training images less the profile's per-class hold-out (cpu:
    100 per class, set aside; no row selects a checkpoint) and the first ``n_test`` test images."""
    train, _, test = cifar10_splits(cfg.s, cfg.n_train, cfg.n_test, holdout_per_class=cfg.holdout)
    return train, test


@dataclass
class Substitute:
    net: torch.nn.Module                  # frozen, on the CPU
    trained: ex.Trained | None            # the pre-training run (None with supplied weights)
    val_accuracy: float | None            # top-1 on the Tiny-ImageNet-32 validation images (%)
    key: str                              # names the substitute's weights in the ABNN networks' repr (fingerprint)
    source: str

    @property
    def result(self):
        return None if self.trained is None else self.trained.result


def substitute(cfg: Config, progress: bool = True) -> Substitute:
    """The frozen substitute (loaded once per configuration): torchvision ImageNet weights if supplied, else the
    RECIPES row "Substitute" pre-trained on Tiny-ImageNet-32 (or its finished run reopened)."""
    if "substitute" in cfg._cache:
        return cfg._cache["substitute"]
    spec = cfg.specs["Substitute"]
    if cfg.substitute_weights:
        net = MODELS.build(spec.model, **spec.model_kw)
        load_torchvision_weights(net, cfg.substitute_weights)
        key = "imagenet-" + fingerprint([str(Path(cfg.substitute_weights).resolve()), spec.model])
        sub = Substitute(freeze(net), None, None, key, f"ImageNet weights {cfg.substitute_weights}")
    else:
        data = load_dataset("tinyimagenet32", "train", cfg.s.data_dir, limit=spec.extra["n"])
        t = ex.train(spec, data, cfg.s.checkpoint_dir, device=cfg.s.device, progress=progress)
        net = copy.deepcopy(t.result.model).cpu()
        val = load_dataset("tinyimagenet32", "val", cfg.s.data_dir)
        acc = ex.evaluate_cached(t, {}, val, batch_size=cfg.eval_batch, seed=cfg.s.seed, device=cfg.s.device,
                                 progress=False)["clean"]
        sub = Substitute(freeze(net), t, acc, "tin-" + t.fingerprint,
                         f"Tiny-ImageNet-32 ({len(data)} images, 200 classes)")
    cfg._cache["substitute"] = sub
    return sub


def train_row(cfg: Config, label: str, train: ArrayDataset | None = None, progress: bool = True) -> ex.Trained:
    """Train one RECIPES row (or reopen its finished run) in ``<checkpoints>/<alias>-<fingerprint>``. A row whose
    spec equals another chapter's (same method, hyperparameters, model, data and TrainConfig) has that run's
    fingerprint."""
    if label not in RECIPES:
        raise UnknownNameError("ABNN row", label, RECIPES)
    if label == "Substitute":
        sub = substitute(cfg, progress)
        if sub.trained is None:
            raise ConfigError(f"the substitute is supplied (${ENV_SUBSTITUTE}): nothing is trained")
        return sub.trained
    spec = cfg.specs[label]
    if spec.method == "abnn":
        substitute(cfg, progress)          # before the ABNN network is built from it
    if train is None:
        train = load_data(cfg)[0]
    return ex.train(spec, train, cfg.s.checkpoint_dir, device=cfg.s.device, progress=progress)


def trained(s: RunSettings, label: str, *, seed: int | None = None, progress: bool = True,
            overrides: dict | None = None) -> ex.Trained:
    """The run that gives table row ``label`` (a RECIPES row: "ABNN", "No Defense", "PGD-AT", the two variants) under
    profile ``s.profile``, trained or reopened. ``t.model(t.spec.rows[label])`` is the network; for ABNN rows it is
    the ABNNNet with its frozen substitute (the spec's ``build`` makes it with the substitute row's weights).
    ``t.spec.extra["eval_batch"]`` is the chapter's evaluation batch (ABNN's predictions depend on the batch)."""
    if seed is not None and int(seed) != s.seed:
        s = dataclasses.replace(s, seed=int(seed))
    return train_row(from_settings(s, overrides), label, progress=progress)


# ---------------------------------------------------------------------------------------------- part rows


def record_training(cfg: Config, rep: Report, name: str, t: ex.Trained, test, note: str = "") -> dict:
    """A part notebook's row: clean test accuracy of a freshly trained model, its measured cost and time."""
    acc = ex.evaluate_cached(t, {}, test, batch_size=cfg.eval_batch, seed=cfg.s.seed, device=cfg.s.device,
                             progress=False)["clean"]
    return rep.add_row("training", name, {"clean": acc}, cost_passes=t.cost_passes,
                       train_s=t.result.train_seconds, epochs=t.result.epochs, note=note or row_note(cfg, name))


def record_substitute(cfg: Config, rep: Report, sub: Substitute) -> None:
    """The substitute's row: top-1 accuracy on the 1 000 Tiny-ImageNet-32 validation images (200 classes)."""
    if sub.result is None:
        rep.add_row("substitute", "Substitute", {}, note=f"supplied weights: {sub.source}")
        return
    r = sub.result
    rep.add_row("substitute", "Substitute", {"clean": sub.val_accuracy}, n=1000, cost_passes=r.passes_per_sample,
                train_s=r.train_seconds, epochs=r.epochs,
                note=f"{cfg.specs['Substitute'].model} pre-trained on {sub.source}; accuracy on the Tiny-ImageNet-32 "
                     "validation images (200 classes, 5 each), not CIFAR-10")


def row_note(cfg: Config, name: str) -> str:
    base = {"smoke": "smoke profile (tiny models, 2 000 images)", "quick": "quick profile (shortened schedule)",
            "cpu": "cpu profile (two CPU cores; width-16 networks, shortened schedule)", "paper": ""}[cfg.s.profile]
    if cfg.s.profile in ("quick", "cpu"):
        spec = cfg.specs.get(name, cfg.specs[VARIANT_ROWS[0]])
        base += f": {spec.config.epochs} epochs"
        base += f", {cfg.target_arch} target"
    if name.startswith("ABNN") and not cfg.substitute_weights:
        base += ("; " if base else "") + "substitute pre-trained on Tiny-ImageNet-32, not ImageNet"
    return base


def parameters_table(models: dict) -> pd.DataFrame:
    rows = []
    for name, m in models.items():
        if isinstance(m, ABNNNet):
            sub, style = num_parameters(m.substitute), m.style_parameters()
            rows.append({"model": name, "target": num_parameters(m) - sub - style, "style maps": style,
                         "substitute (frozen)": sub})
        else:
            rows.append({"model": name, "target": num_parameters(m), "style maps": 0, "substitute (frozen)": 0})
    return pd.DataFrame(rows).set_index("model")


def training_curves(runs: dict):
    """Training loss and accuracy per epoch of several runs (one line per run; Trained or TrainResult)."""
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for name, r in runs.items():
        h = getattr(r, "result", r).history
        axes[0].plot(h["epoch"], h["train_loss"], marker=".", label=name)
        col = "acc" if "acc" in h else "adv_acc"
        if col in h:
            kind = "clean" if col == "acc" else "adversarial"
            axes[1].plot(h["epoch"], 100 * h[col], marker=".", label=f"{name} ({kind})")
    axes[0].set_title("training loss"), axes[1].set_title("training accuracy (%)")
    for a in axes:
        a.set_xlabel("epoch")
        a.legend(fontsize=8)
    fig.tight_layout()
    return fig


def records(df: pd.DataFrame) -> list[dict]:
    """A DataFrame as JSON-ready records (for ``report.extra``)."""
    import json
    return json.loads(df.reset_index().to_json(orient="records"))
