"""The ABNN chapter's video experiment (slides Tables 2–3, UCF-101): its recipes as a literal table, run through the
experiment layer, and the paper's video tables as reference.

UCF-101 and Kinetics-400 weights are not in this project: with ``$ROBUSTLIB_UCF101`` (npz shards of clips, the
frames stacked along the height) and ``$ROBUSTLIB_KINETICS_R3D18`` (torchvision's ``r3d_18`` checkpoint) the
paper's networks run; in the smoke profile tiny networks run on synthetic clips (a pipeline check, not UCF-101).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import pandas as pd

from ... import experiment as ex
from ... import reported
from ...attacks import PGD
from ...attacks.roa import ROA
from ...data import load_dataset
from ...methods.abnn import ABNNNet, freeze
from ...models import MODELS
from ...models.imagenet import load_torchvision_weights
from ...models.video import KINETICS_MEAN, KINETICS_STD, synthetic_clips
from ...report import Report
from ...schedules import triangular
from ...training import TrainConfig
from ...utils import fingerprint
from .recipes import ENV_KINETICS, ENV_UCF101, PAPER, Config

# The video recipes. "ucf101": the paper's networks (3D ResNeXt-101 target, torchvision r3d_18 Kinetics-400
# substitute) with the group's fine-tuning recipe (SGD 0.001, momentum 0.9, wd 1e-5; camera_darpa.pdf) and the
# group's video PGD (ε = 4/255, α = 1/255, T = 5); "synthetic": tiny versions on synthetic clips, smoke and cpu profiles.
VIDEO = {
    "ucf101": {"frames": 40, "size": 112, "target": {"width": 64, "blocks": (3, 4, 23, 3), "cardinality": 32},
               "substitute": {"normalize": (KINETICS_MEAN, KINETICS_STD)},
               "epochs": {"smoke": 1, "quick": 5, "paper": 40}, "batch_size": 16, "eval_batch": 16, "lr": 0.001,
               "momentum": 0.9, "weight_decay": 1e-5, "grad_clip": None, "eps": 4 / 255, "alpha": 1 / 255,
               "steps": 5, "n_test": None, "roa_stride": None,
               # torchvision's r3d_18 keeps 56×56 maps after its stem: flattened whole, the style maps would hold
               # ≈ 3 billion weights, so the substitute features are average-pooled to 2×7×7 (a deviation)
               "style_pool": (2, 7, 7),
               "source": "slides Tables 2–3; GARD_eval models/resnext_onthefly.py (networks), camera_darpa.pdf "
                         "(fine-tuning recipe), opts.py (40-frame clips, PGD)"},
    "synthetic": {"frames": 4, "size": 16, "num_classes": 5, "n_train": 150, "n_test": 40,
                  "target": {"width": 8, "blocks": (1, 1, 1, 1), "cardinality": 4},
                  "substitute": {"width": 8, "blocks": (1, 1, 1, 1)}, "epochs": {"smoke": 3, "cpu": 3}, "batch_size": 10,
                  "eval_batch": 20, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "grad_clip": 1.0,
                  "eps": 8 / 255, "alpha": 2 / 255, "steps": 5, "roa_stride": 6, "style_pool": None,
                  "source": "a pipeline check on synthetic clips; the substitute pre-trained on another synthetic "
                            "clip set (8 classes) in place of Kinetics"},
}


def video_config(profile: str, seed: int) -> dict | None:
    """The video recipe this run uses: UCF-101 when it and Kinetics weights are given, synthetic clips in the smoke
    and cpu profiles, else None."""
    ucf, kin = os.environ.get(ENV_UCF101), os.environ.get(ENV_KINETICS)
    if ucf and kin and profile != "cpu":  # a reader with UCF-101 and Kinetics weights: the paper's networks (a GPU)
        v = VIDEO["ucf101"]
        frames = int(os.environ.get("ROBUSTLIB_UCF101_FRAMES", v["frames"]))  # the authors' 40-frame clips
        return {**v, "kind": "ucf101", "folder": ucf, "substitute_weights": kin, "frames": frames,
                "epochs": v["epochs"][profile], "seed": seed}
    if profile not in ("smoke", "cpu"):   # the synthetic pipeline check costs seconds: also on two CPU cores
        return None
    v = VIDEO["synthetic"]
    return {**v, "kind": "synthetic", "epochs": v["epochs"][profile], "seed": seed}


def reference_tables() -> dict[str, pd.DataFrame]:
    """The paper's UCF-101 tables and the two earlier video defences as context (from robustlib/reported)."""
    return {k: reported.table(PAPER, k) for k in ("ucf101_pgd", "ucf101_roa", "oudefend", "multibn")}


def video_missing(cfg: Config, rep: Report) -> None:
    """The UCF-101 rows keep their places; they are measured only when UCF-101 and Kinetics weights are given."""
    note = ("not run: needs UCF-101 and a Kinetics-400 3D ResNet-18 (not available in this project); set "
            f"${ENV_UCF101} and ${ENV_KINETICS} to run it")
    rep.add_missing("ucf101_pgd", reported.methods(PAPER, "ucf101_pgd"), note, ("clean", "pgd"))
    rep.add_missing("ucf101_roa", reported.methods(PAPER, "ucf101_roa"), note, ("clean", "roa"))


def _train_config(cfg: Config, v: dict) -> TrainConfig:
    return TrainConfig(epochs=v["epochs"], batch_size=v["batch_size"], schedule=triangular(v["lr"], v["epochs"]),
                       momentum=v["momentum"], weight_decay=v["weight_decay"], augment=None, seed=cfg.s.seed,
                       channels_last=False, grad_clip=v["grad_clip"],
                       amp="off" if cfg.s.device.type == "cpu" else "auto")  # CPU bf16 made the 3-D net NaN


def video_experiment(cfg: Config, rep: Report) -> pd.DataFrame | None:
    """No Defense vs ABNN on videos: 3D ResNeXt target, frozen 3D ResNet-18 substitute, PGD (ε, α, T = 5) and ROA
    (10 % area, t_max = 5) on whole clips. Smoke and cpu profiles: tiny networks on synthetic clips (the substitute
    pre-trained on a *different* synthetic clip set, standing in for Kinetics). With ``$ROBUSTLIB_UCF101`` and
    ``$ROBUSTLIB_KINETICS_R3D18``: the paper's networks on UCF-101. Otherwise None."""
    v = cfg.video
    if v is None:
        return None
    s, T, kind = cfg.s, v["frames"], v["kind"]
    tc = _train_config(cfg, v)
    run = lambda spec, data: ex.train(spec, data, s.checkpoint_dir, device=s.device)  # noqa: E731
    if kind == "synthetic":
        kw = dict(num_classes=v["num_classes"], frames=T, size=v["size"], seed=v["seed"])
        train, test = synthetic_clips("train", v["n_train"], **kw), synthetic_clips("test", v["n_test"], **kw)
        pre = synthetic_clips("train", v["n_train"], num_classes=8, frames=T, size=v["size"], seed=v["seed"] + 1)
        t_sub = run(ex.RunSpec(alias=f"abnn-video-{kind}-substitute", label="Substitute", method="standard", hp={},
                               model="r3d_18", model_kw={"num_classes": 8, "frames": T, **v["substitute"]},
                               config=tc, source=v["source"]), pre)
        sub, sub_key = freeze(copy.deepcopy(t_sub.result.model).cpu()), "video-" + t_sub.fingerprint
        table, sub_note = "video_synthetic", "substitute pre-trained on another synthetic clip set (8 classes)"
    else:
        train = load_dataset("npz", "train", folder=v["folder"])
        test = load_dataset("npz", "test", folder=v["folder"]).head(v["n_test"])
        sub = MODELS.build("r3d_18", num_classes=400, frames=T, **v["substitute"])
        load_torchvision_weights(sub, v["substitute_weights"])
        sub = freeze(sub)
        sub_key = "kinetics-" + fingerprint([str(Path(v["substitute_weights"]).resolve())])
        table, sub_note = "ucf101", f"substitute: torchvision r3d_18 Kinetics-400 weights ({v['substitute_weights']})"
    target_kw = {"num_classes": train.num_classes, "frames": T, **v["target"]}
    shape = (3, T, v["size"], v["size"])
    std = run(ex.RunSpec(alias=f"abnn-video-{kind}-no-defense", label="No Defense", method="standard", hp={},
                         model="resnext3d_101", model_kw=target_kw, config=tc, source=v["source"]), train)
    abn = run(ex.RunSpec(alias=f"abnn-video-{kind}-abnn", label="ABNN", method="abnn", hp={}, model="abnn",
                         model_kw={"target": "resnext3d_101", "target_kw": target_kw, "substitute": sub_key,
                                   "style_pool": v["style_pool"]}, config=tc, source=v["source"],
                         build=lambda: ABNNNet(MODELS.build("resnext3d_101", **target_kw), copy.deepcopy(sub),
                                               input_shape=shape, style_pool=v["style_pool"], substitute_id=sub_key)),
              train)
    attacks = {"pgd": PGD(v["eps"], v["alpha"], v["steps"], name="pgd"),
               "roa": ROA(0.10, steps=5, alpha=70 / 255, frames=T, stride=v["roa_stride"], location="search",
                          seed=s.seed, name="roa")}
    rows = []
    for name, t in (("No Defense", std), ("ABNN", abn)):
        res = ex.evaluate_cached(t, attacks, test, batch_size=v["eval_batch"], seed=s.seed, device=s.device,
                                 progress=False)
        acc, r = res.accuracies(), t.result
        note = (f"{'synthetic clips, tiny networks: NOT UCF-101' if kind == 'synthetic' else 'UCF-101'}; "
                f"{v['epochs']} epochs" + (f", gradient norm clipped at {v['grad_clip']}" if v["grad_clip"] else "")
                + f"; PGD ε = {v['eps'] * 255:.0f}/255, α = {v['alpha'] * 255:.0f}/255, "
                f"T = {v['steps']}; ROA 10 % area, searched location (same in every frame), t_max = 5"
                + ("; " + sub_note if name == "ABNN" else "")
                + (f"; substitute features average-pooled to {v['style_pool']} before the style maps"
                   if name == "ABNN" and v["style_pool"] else ""))
        common = dict(cost_passes=t.cost_passes, train_s=r.train_seconds, epochs=r.epochs, note=note, n=res.n)
        if table == "ucf101":
            rep.add_row("ucf101_pgd", name, {"clean": acc["clean"], "pgd": acc["pgd"]}, **common)
            rep.add_row("ucf101_roa", name, {"clean": acc["clean"], "roa": acc["roa"]}, **common)
        else:
            rep.add_row(table, name, {"clean": acc["clean"], "pgd": acc["pgd"], "roa": acc["roa"]}, **common)
        rows.append({"method": name, "clean": acc["clean"], "pgd": acc["pgd"], "roa": acc["roa"],
                     "N/sample": t.cost_passes, "clips": res.n})
    return pd.DataFrame(rows).set_index("method")
