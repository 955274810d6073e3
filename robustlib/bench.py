"""``python -m robustlib bench``: how fast training and evaluation run on this machine.

For a CIFAR-10 ResNet-18 at the papers' batch sizes it measures, per training method: images per second over timed
steps after warm-up, seconds per epoch (49 000 images for NuAT's hold-out split, 50 000 otherwise), the cost meter's
N per sample, FLOPs per image (counted with ``torch.utils.flop_counter`` on one real training step) and the achieved
fraction of the GPU's dense bf16 peak; and the evaluation time of PGD-20 and AutoAttack (``standard``) on 1 000 test
images. Inputs are synthetic CIFAR-shaped images: throughput does not depend on pixel values, and the benchmark then
needs no data folder.

It writes JSON (``--out``; keys include ``hardware``, ``standard_epoch_s``, ``nuat_epoch_s``, ``pgd10_epoch_s``,
``autoattack_1000_s``) and a Markdown table beside it, and prints the table.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch

from .attacks import PGD, AutoAttack
from .data import Augment, load_dataset
from .evaluation import evaluate
from .methods import METHODS, PGDAT, Standard, fbf
from .methods.base import Step
from .models import build_model
from .training import TrainConfig, Trainer
from .utils import atomic_write_text, hardware_info, hardware_label, package_versions, resolve_device

EPS = 8 / 255
# Dense bf16 tensor-core peak used for the utilisation column (TFLOP/s). H200: measured 8192³ GEMM ceiling on this
# project's machine (performance notes); others: vendor dense figures.
PEAK_BF16_TFLOPS = {"H200": 790.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}


def _method_specs() -> dict[str, tuple[int, int, Callable]]:
    """name → (batch size, epoch images, factory). Batch sizes as in the papers (NuAT 64, others 128)."""
    specs = {
        "standard": (128, 50000, lambda: Standard()),
        "fbf": (128, 50000, lambda: fbf(EPS)),
        "nuat": (64, 49000, lambda: METHODS.build("nuat")),
        "pgd10": (128, 50000, lambda: PGDAT(EPS, 2 / 255, 10, name="PGD-10 AT")),
        "trades10": (128, 50000, lambda: METHODS.build("trades", steps=10)),
    }
    if "nuat" not in METHODS:
        specs.pop("nuat")
    if "trades" not in METHODS:
        specs.pop("trades10")
    return specs


def peak_tflops(hw: dict) -> float | None:
    name = hw.get("gpu") or ""
    for key, v in PEAK_BF16_TFLOPS.items():
        if key in name:
            return v
    return None


def _flops_per_step(trainer: Trainer, x, y) -> float:
    """FLOPs of one real training step (matmuls and convolutions, forward and backward), counted per aten op with
    torch's FLOP formulas. (``FlopCounterMode`` itself attaches module hooks that break ``autograd.grad`` on a leaf,
    which every attack uses, so a plain dispatch mode does the counting.)"""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            f = flop_registry.get(func._overloadpacket)
            if f is not None:
                Count.total += f(*args, **kwargs, out_val=out)
            return out

    with Count():
        trainer.train_step(x, y, Step(0, 0, 0, trainer))
    return float(Count.total)


def bench_training(method: str, *, device, model: str = "resnet18", model_kwargs: dict | None = None,
                   batches: int = 20, warmup: int = 3, compile: dict | None = None,
                   batch_size: int | None = None) -> dict:
    """Time ``batches`` training steps of ``method`` after ``warmup`` steps; returns a dict of measurements."""
    specs = _method_specs()
    bs, epoch_images, factory = specs[method]
    bs = batch_size or bs
    dev = resolve_device(device)
    size = 32
    data = load_dataset("synthetic", "train", n=bs * (batches + warmup), size=size)
    cfg = TrainConfig(epochs=1, batch_size=bs, schedule={"name": "constant", "lr": 0.01}, augment=Augment(),
                      compile=compile)
    torch.manual_seed(0)
    trainer = Trainer(build_model(model, **(model_kwargs or {})), factory(), data, cfg, device=dev,
                      progress_bar=False, name=f"bench-{method}")
    it = trainer.batches.epoch(0)
    step = Step(0, 0, 0, trainer)
    for _ in range(warmup):
        trainer.train_step(*next(it), step)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    samples0 = trainer.meter.samples
    passes0 = trainer.meter.total_passes
    t0 = time.perf_counter()
    for _ in range(batches):
        trainer.train_step(*next(it), step)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    n = trainer.meter.samples - samples0
    passes = (trainer.meter.total_passes - passes0) / max(n, 1)
    x, y = next(iter(trainer.batches.epoch(1)))
    flops = _flops_per_step(trainer, x, y) / bs
    ips = n / seconds
    return {"method": method, "batch_size": bs, "images_per_s": ips, "epoch_s": epoch_images / ips,
            "epoch_images": epoch_images, "passes_per_sample": passes, "gflop_per_image": flops / 1e9,
            "tflops": flops * ips / 1e12, "timed_batches": batches, "compile": compile is not None}


def bench_evaluation(*, device, model: str = "resnet18", model_kwargs: dict | None = None, n: int = 1000,
                     batch_size: int = 500, autoattack: bool = True, train_steps: int = 200,
                     checkpoint: str | Path | None = None) -> dict:
    """Seconds for PGD-20 and AutoAttack (standard) on ``n`` test images, scaled to 1 000 images.

    AutoAttack's cost depends on how robust the model is (its later attacks run only on the images that survive the
    earlier ones), so the timed model should be robust: a state dict from ``checkpoint`` (e.g. a run's PGD-AT model),
    or else a model trained here for ``train_steps`` steps of FBF on synthetic CIFAR-shaped images. Its clean and
    PGD-20 accuracy are reported beside the times.
    """
    dev = resolve_device(device)
    torch.manual_seed(0)
    net = build_model(model, **(model_kwargs or {}))
    data = load_dataset("synthetic", "test", n=n, size=32)
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        net.load_state_dict(state.get("model", state.get("state", state)))
        source = f"checkpoint {checkpoint}"
        data = load_dataset("cifar10", "test").head(n)
    elif train_steps:
        train = load_dataset("synthetic", "train", n=128 * train_steps, size=32)
        cfg = TrainConfig(epochs=1, batch_size=128, schedule={"name": "cyclic", "max_lr": 0.1, "up": 0.4,
                                                              "down": 0.6, "cycle_momentum": False},
                          augment=Augment())
        net = Trainer(net, fbf(EPS), train, cfg, device=dev, progress_bar=False, name="bench-eval").fit().model
        source = f"FBF, {train_steps} steps on synthetic images"
    else:
        source = "untrained"
    net = net.to(dev).eval()
    attacks = {"pgd20": PGD(EPS, 2 / 255, 20)}
    if autoattack:
        attacks["aa"] = AutoAttack(EPS, version="standard", batch_size=batch_size)
    res = evaluate(net, data, attacks, batch_size=batch_size, device=dev, progress=False)
    scale = 1000 / n
    acc = res.accuracies()
    out = {"eval_images": n, "eval_model": source, "eval_clean": acc["clean"], "eval_pgd20": acc["pgd20"],
           "pgd20_1000_s": res.seconds["pgd20"] * scale}
    if autoattack:
        out["autoattack_1000_s"] = res.seconds["aa"] * scale
        out["eval_aa"] = acc["aa"]
    return out


def run(device: str = "auto", methods: Sequence[str] | None = None, *, model: str = "resnet18",
        model_kwargs: dict | None = None, batches: int = 20, warmup: int = 3, eval_images: int = 1000,
        autoattack: bool = True, compile: dict | None = None, out: str | Path | None = None, log=print,
        eval_train_steps: int = 200, eval_checkpoint: str | Path | None = None) -> dict:
    """Run the benchmark; returns (and optionally writes) the results dict."""
    dev = resolve_device(device)
    specs = _method_specs()
    methods = list(methods or specs)
    unknown = [m for m in methods if m not in specs]
    if unknown:
        from .errors import UnknownNameError
        raise UnknownNameError("benchmark method", unknown[0], specs)
    hw = hardware_info(dev)
    rows = []
    for m in methods:
        log(f"[bench] {m} …")
        rows.append(bench_training(m, device=dev, model=model, model_kwargs=model_kwargs, batches=batches,
                                   warmup=warmup, compile=compile))
    peak = peak_tflops(hw)
    for r in rows:
        r["peak_fraction"] = r["tflops"] / peak if peak else None
    log("[bench] evaluation …")
    ev = bench_evaluation(device=dev, model=model, model_kwargs=model_kwargs, n=eval_images, autoattack=autoattack,
                          train_steps=eval_train_steps, checkpoint=eval_checkpoint)
    doc = {"paper": "bench", "hardware": hw, "versions": package_versions(), "model": model,
           "model_kwargs": model_kwargs or {}, "amp": "bf16" if dev.type == "cuda" else "fp32",
           "peak_bf16_tflops": peak, "methods": rows, **ev,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for r in rows:
        doc[f"{r['method']}_epoch_s"] = r["epoch_s"]
        doc[f"{r['method']}_images_per_s"] = r["images_per_s"]
    table = markdown(doc)
    log(table)
    if out is not None:
        out = Path(out)
        atomic_write_text(json.dumps(doc, indent=2, default=str), out)
        atomic_write_text(table + "\n", out.with_suffix(".md"))
    return doc


def frame(doc: dict) -> pd.DataFrame:
    df = pd.DataFrame(doc["methods"])
    return df[["method", "batch_size", "images_per_s", "epoch_s", "passes_per_sample", "gflop_per_image", "tflops",
               "peak_fraction"]]


def markdown(doc: dict) -> str:
    """The benchmark as a Markdown table (what the performance appendix includes)."""
    hw = hardware_label(doc["hardware"])
    kw = doc.get("model_kwargs") or {}
    model = f"`{doc['model']}`" + (f" ({', '.join(f'{k}={v}' for k, v in kw.items())})" if kw else "")
    lines = [f"Measured on **{hw}**, {doc['amp']}, model {model}, torch {doc['versions'].get('torch')}, "
             f"{doc['created']}.", "",
             "| method | batch | images/s | s per epoch | N per sample | GFLOP/image | TFLOP/s | of bf16 peak |",
             "|---|---|---|---|---|---|---|---|"]
    for r in doc["methods"]:
        frac = f"{100 * r['peak_fraction']:.1f} %" if r.get("peak_fraction") else "–"
        lines.append(f"| {r['method']} | {r['batch_size']} | {r['images_per_s']:.0f} | {r['epoch_s']:.1f} | "
                     f"{r['passes_per_sample']:.0f} | {r['gflop_per_image']:.2f} | {r['tflops']:.2f} | {frac} |")
    aa = ""
    if "autoattack_1000_s" in doc:
        aa = f", AutoAttack (standard) {doc['autoattack_1000_s']:.1f} s (robust accuracy {doc['eval_aa']:.1f} %)"
    lines += ["", f"Evaluation, scaled to 1 000 images (measured on {doc['eval_images']}; model: {doc['eval_model']}, "
                  f"clean {doc['eval_clean']:.1f} %, PGD-20 {doc['eval_pgd20']:.1f} %): PGD-20 "
                  f"{doc['pgd20_1000_s']:.1f} s{aa}."]
    return "\n".join(lines)
