"""``python -m robustlib bench``: how fast training and evaluation run on this machine.

For a CIFAR-10 ResNet-18 at the papers' batch sizes it measures, per training method: images per second over timed
steps after warm-up, seconds per epoch (49 000 images for NuAT's hold-out split, 50 000 otherwise), the cost meter's
N per sample, FLOPs per image (counted with ``torch.utils.flop_counter`` on one real training step) and the achieved
fraction of the GPU's dense bf16 peak; and the evaluation time of PGD-20 and AutoAttack (``standard``) on 1 000 test
images. Inputs are synthetic CIFAR-shaped images: throughput does not depend on pixel values, and the benchmark then
needs no data folder.

Each method is timed the way robustlib trains it (:class:`~robustlib.training.Trainer`: device-resident data and
augmentation, bf16 autocast + channels_last where :attr:`Trainer.precision` resolves to them, input-gradient-only
attacks). NuAT is timed at its full λ (4.5, no ramp) with the alternation running, so that both nuclear-norm terms
are computed as in every epoch after the first (epoch 0 has λ = 0), on the ResNet-18 with the official block
(``extra_relu=True``) when the model is ``resnet18``.

``reference=True`` (``--reference``) times, in the same call and interleaved round by round with robustlib's loop,
a **reference loop written the way the authors' scripts are** (:class:`ReferenceLoop`): a ``torch.utils.data``
``DataLoader`` (shuffled, the scripts' worker count capped at ``os.cpu_count()``) over a Dataset of PIL images with
``transforms.Compose([RandomCrop(32, padding=4), RandomHorizontalFlip(), ToTensor()])``, fp32, eager,
``model.train()``, SGD, and the method's step written out as in Wong et al.'s ``train_fgsm.py`` (FBF) and
``NuAT_cifar10.py`` (NuAT), for the same model, batch size, number of warm-up and timed steps. It reports robustlib's
speed as a ratio to it. Where the reference differs from the scripts on purpose: no ``Normalize`` in FBF's transform
(the same model object is timed on both sides, and robustlib's models take [0, 1] inputs); a constant learning rate
instead of the scripts' per-iteration ``CyclicLR``; no per-step console printing (the NuAT script's print syncs every
step); and no ``cudnn.benchmark`` switch (global state).

It writes JSON (``--out``; keys include ``hardware``, ``standard_epoch_s``, ``nuat_epoch_s``, ``pgd10_epoch_s``,
``autoattack_1000_s``, and with the reference ``<method>_reference_images_per_s`` and ``<method>_speedup``) and a
Markdown table beside it, and prints the table.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from .attacks import PGD, AutoAttack
from .data import Augment, load_dataset
from .errors import ConfigError, UnknownNameError
from .evaluation import evaluate
from .methods import METHODS, PGDAT, Standard, fbf
from .methods.base import Step
from .models import build_model
from .training import TrainConfig, Trainer
from .utils import (atomic_write_text, cpu_bf16_native, hardware_info, hardware_label, package_versions,
                    resolve_device)

EPS = 8 / 255
NUAT_ALPHA = 4 / 255          # Bernoulli start magnitude of NuAT's scripts
NUAT_LAM = 4.5                # NuAT's λ_max (ResNet-18 script); timed without the ramp on both sides
LR = 0.01                     # constant learning rate of both timed loops
# Dense bf16 tensor-core peak used for the utilisation column (TFLOP/s). H200: measured 8192³ GEMM ceiling on this
# project's machine (performance notes); others: vendor dense figures.
PEAK_BF16_TFLOPS = {"H200": 790.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}


def _method_specs() -> dict[str, tuple[int, int, Callable]]:
    """name → (batch size, epoch images, factory): every training method the book's chapters train, at the
    hyperparameters of their ResNet-18 recipes (NuAT chapter unless named). Batch sizes as in the papers (NuAT and
    its guided baselines 64, the others 128). ABNN is not here: it trains only its small adaptive-BN layers around a
    frozen substitute network (its chapter measures that cost, 3N)."""
    b = METHODS.build
    return {
        "standard": (128, 50000, lambda: Standard()),
        "fgsm_at": (128, 50000, lambda: b("fgsm_at", eps=EPS)),
        "rfgsm_at": (128, 50000, lambda: b("rfgsm_at", eps=EPS)),
        "fbf": (128, 50000, lambda: fbf(EPS)),
        "rmgm": (64, 49000, lambda: b("rmgm", eps=EPS)),
        "gat": (64, 49000, lambda: b("gat", eps=EPS)),
        "nuat": (64, 49000, lambda: b("nuat", lam_max=NUAT_LAM, ramp=False)),
        "free_at": (128, 50000, lambda: b("free_at", eps=EPS, replays=8)),
        "pgd10": (128, 50000, lambda: PGDAT(EPS, 2 / 255, 10, name="PGD-10 AT")),
        "trades10": (128, 50000, lambda: b("trades", steps=10)),
        "awp10": (128, 50000, lambda: b("awp", eps=EPS, alpha=2 / 255, steps=10, warmup_epochs=0)),  # AWP on
        "advprop": (128, 50000, lambda: b("advprop")),          # AdvProp chapter: PGD-1 at ε = 1/255
        "fd_gradreg": (128, 50000, lambda: b("fd_gradreg", lam=1.0, h=0.1, norm="l1")),   # comparison's FD row
    }


# Per method, what the timed loop changes: AdvProp's model gets dual BatchNorms; FD gradient regularisation trains in
# fp32 (its finite differences must not be rounded to bf16), as its recipe does.
METHOD_OPTIONS = {"advprop": {"dual_bn": True}, "fd_gradreg": {"amp": "off"}}


def _model_kwargs(method: str, model: str, model_kwargs: dict | None) -> dict:
    """The model's keyword arguments for ``method``: NuAT's ResNet-18 gets the official block (``extra_relu``)."""
    kw = dict(model_kwargs or {})
    if method == "nuat" and model == "resnet18":
        kw.setdefault("extra_relu", True)
    return kw


def peak_tflops(hw: dict) -> float | None:
    name = hw.get("gpu") or ""
    for key, v in PEAK_BF16_TFLOPS.items():
        if key in name:
            return v
    return None


def speed_ratio(images_per_s: float, reference_images_per_s: float) -> float:
    """robustlib's speed as a multiple of the reference loop's (both measured in images per second)."""
    if not reference_images_per_s > 0:
        raise ConfigError(f"the reference loop's speed must be > 0 images/s, got {reference_images_per_s!r}")
    return images_per_s / reference_images_per_s


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


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


# ----------------------------------------------------------------------------------------------- robustlib's loop

class RobustlibLoop:
    """robustlib's training loop for the benchmark: a :class:`Trainer` stepped by hand over ``steps`` batches of
    synthetic CIFAR-shaped images (one epoch, device-resident data and augmentation), inputs in the Trainer's memory
    format, the iteration counter advancing (NuAT's alternation runs)."""

    def __init__(self, method: str, *, device, model: str = "resnet18", model_kwargs: dict | None = None,
                 batch_size: int | None = None, steps: int = 23, compile: dict | None = None, seed: int = 0):
        specs = _method_specs()
        bs, self.epoch_images, factory = specs[method]
        self.method, self.batch_size = method, batch_size or bs
        self.device = resolve_device(device)
        data = load_dataset("synthetic", "train", n=self.batch_size * steps, size=32)
        opts = METHOD_OPTIONS.get(method, {})
        cfg = TrainConfig(epochs=1, batch_size=self.batch_size, schedule={"name": "constant", "lr": LR},
                          augment=Augment(), compile=compile, amp=opts.get("amp", "auto"))
        torch.manual_seed(seed)
        net = build_model(model, **_model_kwargs(method, model, model_kwargs))
        if opts.get("dual_bn"):
            from .methods.advprop import dualize
            net = dualize(net)
        self.trainer = Trainer(net, factory(), data, cfg, device=self.device, progress_bar=False,
                               name=f"bench-{method}")
        self.trainer.model.train()
        self.trainer._set_hyperparameters(0.0)
        self._it = iter(self.trainer.batches.epoch(0))
        self.counter = 0
        self.images = 0         # training images fed (Free-AT's replays of a batch count once)
        self.losses: list[torch.Tensor] = []

    @property
    def precision(self) -> dict:
        return self.trainer.precision

    def run(self, n: int) -> float:
        """``n`` training steps (data and augmentation included); returns their wall-clock seconds."""
        tr = self.trainer
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(n):
            x, y = next(self._it)
            if tr.channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            loss, _ = tr.train_step(x, y, Step(0, self.counter, self.counter, tr))
            self.counter += 1
            self.images += len(x)
            self.losses.append(loss)
        _sync(self.device)
        return time.perf_counter() - t0

    def measurements(self, n_images: int, seconds: float, passes_per_sample: float) -> dict:
        """The row of :func:`bench_training` for ``n_images`` trained in ``seconds`` (FLOPs counted on one more
        step, which the caller's ``passes_per_sample`` must not include)."""
        tr = self.trainer
        passes = passes_per_sample
        x, y = next(iter(tr.batches.epoch(1)))
        if tr.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        flops = _flops_per_step(tr, x, y) / self.batch_size
        ips = n_images / seconds
        return {"method": self.method, "batch_size": self.batch_size, "images_per_s": ips,
                "epoch_s": self.epoch_images / ips, "epoch_images": self.epoch_images, "passes_per_sample": passes,
                "gflop_per_image": flops / 1e9, "tflops": flops * ips / 1e12,
                "timed_batches": n_images // self.batch_size, "compile": tr.config.compile is not None,
                "precision": dict(self.precision)}


def bench_training(method: str, *, device, model: str = "resnet18", model_kwargs: dict | None = None,
                   batches: int = 20, warmup: int = 3, compile: dict | None = None,
                   batch_size: int | None = None) -> dict:
    """Time ``batches`` training steps of ``method`` after ``warmup`` steps; returns a dict of measurements."""
    loop = RobustlibLoop(method, device=device, model=model, model_kwargs=model_kwargs, batch_size=batch_size,
                         steps=batches + warmup, compile=compile)
    loop.run(warmup)
    images0, passes0 = loop.images, loop.trainer.meter.total_passes
    seconds = loop.run(batches)
    n = loop.images - images0
    return loop.measurements(n, seconds, (loop.trainer.meter.total_passes - passes0) / max(n, 1))


# ------------------------------------------------------------------------------------ the authors' scripts' loop

# DataLoader workers of the scripts: Wong et al.'s CIFAR-10 loaders (FBF's ``train_fgsm.py``; plain training is the
# same script without the attack) use 2; NuAT's ``NuAT_cifar10.py`` passes none, i.e. loads in the main process.
REFERENCE_WORKERS = {"standard": 2, "fbf": 2, "nuat": 0}


class PILImages(torch.utils.data.Dataset):
    """uint8 N×C×H×W images served as torchvision's CIFAR-10 Dataset serves them: each item is a PIL image (made
    from the H×W×C array) passed through ``transform``, with its integer label."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform=None):
        if x.dtype != torch.uint8 or x.ndim != 4:
            raise ConfigError(f"PILImages needs uint8 N×C×H×W images, got {x.dtype} {tuple(x.shape)}")
        self.data = x.permute(0, 2, 3, 1).contiguous().numpy()      # N×H×W×C, like torchvision's CIFAR10.data
        self.targets = [int(t) for t in y]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def image(self, i: int):
        from PIL import Image
        return Image.fromarray(self.data[i])

    def __getitem__(self, i: int):
        img = self.image(i)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.targets[i]


def script_transform():
    """The scripts' training transform: RandomCrop(32, padding=4) (zero fill), RandomHorizontalFlip, ToTensor."""
    from torchvision import transforms
    return transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                               transforms.ToTensor()])


def _reference_standard(loop: "ReferenceLoop", x, y):
    out = loop.model(x)
    loss = F.cross_entropy(out, y)
    loop.optimizer.zero_grad()
    loss.backward()
    loop.optimizer.step()
    return loss


def _reference_fbf(loop: "ReferenceLoop", x, y):
    """FGSM from a uniform start, as ``train_fgsm.py``: δ ~ U(−ε, ε) with x + δ kept in the image range, one signed
    step of α = 1.25ε on CE (a train-mode forward and a full ``backward()``, weight gradients included), δ clamped to
    [−ε, ε] and x + δ to the image range, then the update on CE(x + δ)."""
    model, opt, eps = loop.model, loop.optimizer, loop.eps
    alpha = 1.25 * eps
    delta = torch.zeros_like(x).uniform_(-eps, eps)
    delta = torch.max(torch.min(delta, 1 - x), -x)
    delta.requires_grad_(True)
    loss = F.cross_entropy(model(x + delta), y)
    loss.backward()
    grad = delta.grad.detach()
    d = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
    d = torch.max(torch.min(d, 1 - x), -x)
    out = model(x + d)
    loss = F.cross_entropy(out, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def _reference_nuat(loop: "ReferenceLoop", x, y):
    """Single-step NuAT, as ``NuAT_cifar10.py``: a train-mode clean forward kept with its graph (the attack's
    reference), a Bernoulli ±α start clipped to [0, 1], then in eval mode one signed step of ε on CE (+ λ·‖f(x') −
    f(x)‖_*/B on odd iterations) through a full ``backward()``, projection onto the ε-ball and [0, 1]; then train-mode
    forwards of the adversarial and clean batches and the update on CE(clean) + λ·‖f(x̃) − f(x)‖_*/B."""
    model, opt, eps, lam, b = loop.model, loop.optimizer, loop.eps, loop.lam, len(x)
    out = model(x)
    x0 = (x + loop.alpha * torch.sign(0.5 - torch.rand_like(x))).clamp(0, 1)
    model.eval()
    xa = x0.clone().requires_grad_(True)
    rout = model(xa)
    cost = F.cross_entropy(rout, y)
    if loop.counter % 2:
        cost = cost + lam * torch.linalg.matrix_norm(out - rout, ord="nuc") / b
    cost.backward()
    xa = (x0 + eps * xa.grad.sign()).clamp(0, 1)
    xa = (x + (xa - x).clamp(-eps, eps)).clamp(0, 1)
    model.train()
    opt.zero_grad()
    adv_out = model(xa)
    out = model(x)
    loss = F.cross_entropy(out, y) + lam * torch.linalg.matrix_norm(out - adv_out, ord="nuc") / b
    loss.backward()
    opt.step()
    return loss


REFERENCE_STEPS: dict[str, Callable] = {"standard": _reference_standard, "fbf": _reference_fbf,
                                        "nuat": _reference_nuat}


class ReferenceLoop:
    """A training loop written the way the authors' scripts are: a shuffled ``DataLoader`` over PIL images with
    torchvision transforms (:func:`script_transform`; ``workers`` as the script, at most ``os.cpu_count()``), fp32,
    eager, ``model.train()``, SGD (momentum 0.9, weight decay 5e-4, constant LR), and the method's step written out
    (:data:`REFERENCE_STEPS`). Built on the same model type, batch size and synthetic images as
    :class:`RobustlibLoop`."""

    def __init__(self, method: str, *, device, model: str = "resnet18", model_kwargs: dict | None = None,
                 batch_size: int | None = None, steps: int = 23, workers: int | None = None, seed: int = 0):
        if method not in REFERENCE_STEPS:
            raise UnknownNameError("reference method", method, REFERENCE_STEPS)
        self.method = method
        self.batch_size = batch_size or _method_specs()[method][0]
        self.device = resolve_device(device)
        self.eps, self.alpha, self.lam = EPS, NUAT_ALPHA, NUAT_LAM
        self._step = REFERENCE_STEPS[method]
        torch.manual_seed(seed)
        self.model = build_model(model, **_model_kwargs(method, model, model_kwargs)).to(self.device)
        self.model.train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
        data = load_dataset("synthetic", "train", n=self.batch_size * steps, size=32)
        self.dataset = PILImages(data.x, data.y, script_transform())
        wanted = REFERENCE_WORKERS[method] if workers is None else workers
        self.workers = max(0, min(int(wanted), os.cpu_count() or 1))
        self.loader = torch.utils.data.DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True,
                                                  num_workers=self.workers,
                                                  pin_memory=self.device.type == "cuda" and method != "nuat")
        self._it = iter(self.loader)
        self.counter = 0
        self.losses: list[torch.Tensor] = []

    precision = {"amp": "fp32", "channels_last": False}

    def run(self, n: int) -> float:
        """``n`` training steps (loading, PIL transforms and the host-to-device copy included); returns seconds."""
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(n):
            x, y = next(self._it)
            x, y = x.to(self.device), y.to(self.device)
            loss = self._step(self, x, y)
            self.counter += 1
            self.losses.append(loss.detach())
        _sync(self.device)
        return time.perf_counter() - t0

    def close(self) -> None:
        """Stop the DataLoader's worker processes."""
        self._it = None


def reference_loop(method: str, **kw) -> ReferenceLoop:
    """:class:`ReferenceLoop` for ``method`` (one of :data:`REFERENCE_STEPS`)."""
    return ReferenceLoop(method, **kw)


def bench_pair(method: str, *, device, model: str = "resnet18", model_kwargs: dict | None = None,
               batches: int = 20, warmup: int = 3, rounds: int = 1, compile: dict | None = None,
               batch_size: int | None = None, workers: int | None = None) -> dict:
    """Time robustlib's loop and the reference loop for ``method`` in one call: both warm up for ``warmup`` steps,
    then ``rounds`` rounds alternate ``batches`` timed steps of robustlib's loop with ``batches`` of the reference
    (so background load hits both alike). Returns :func:`bench_training`'s row plus ``reference_images_per_s``,
    ``speedup`` (robustlib ÷ reference), both sides' resolved ``precision``, the reference's DataLoader workers and
    the per-round speeds."""
    if method not in REFERENCE_STEPS:
        raise UnknownNameError("reference method", method, REFERENCE_STEPS)
    if rounds < 1 or batches < 1:
        raise ConfigError(f"rounds and batches must be ≥ 1, got rounds={rounds}, batches={batches}")
    steps = warmup + rounds * batches
    lib = RobustlibLoop(method, device=device, model=model, model_kwargs=model_kwargs, batch_size=batch_size,
                        steps=steps, compile=compile)
    ref = ReferenceLoop(method, device=device, model=model, model_kwargs=model_kwargs,
                        batch_size=lib.batch_size, steps=steps, workers=workers)
    try:
        lib.run(warmup)
        ref.run(warmup)
        images0, passes0 = lib.images, lib.trainer.meter.total_passes
        lib_s, ref_s = [], []
        for _ in range(rounds):
            lib_s.append(lib.run(batches))
            ref_s.append(ref.run(batches))
    finally:
        ref.close()
    n = lib.images - images0
    row = lib.measurements(n, sum(lib_s), (lib.trainer.meter.total_passes - passes0) / max(n, 1))
    per_round = batches * lib.batch_size
    ref_ips = rounds * per_round / sum(ref_s)
    row.update(reference_images_per_s=ref_ips, speedup=speed_ratio(row["images_per_s"], ref_ips),
               reference_precision=dict(ref.precision), reference_workers=ref.workers, rounds=rounds,
               round_images_per_s=[per_round / t for t in lib_s],
               reference_round_images_per_s=[per_round / t for t in ref_s])
    return row


# --------------------------------------------------------------------------------------------------- evaluation

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


# ----------------------------------------------------------------------------------------------- the machine's peak

def matmul_peak(device, dtype: torch.dtype = torch.float32, n: int = 2048, seconds: float = 1.0) -> float:
    """This device's measured dense matmul ceiling in TFLOP/s: an n×n by n×n product (2n³ FLOPs) in ``dtype``, repeated
    for at least ``seconds`` after one untimed product. It is the denominator of the "of peak" column on machines
    without a vendor figure in :data:`PEAK_BF16_TFLOPS` (CPUs): a measured ceiling, like the H200's."""
    dev = resolve_device(device)
    if n < 64 or seconds <= 0:
        raise ConfigError(f"matmul_peak needs n ≥ 64 and seconds > 0, got n={n}, seconds={seconds}")
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev, dtype)
    b = torch.randn(n, n, generator=g).to(dev, dtype)
    (a @ b).sum().item()
    reps, t0 = 0, time.perf_counter()
    while True:
        c = a @ b
        reps += 1
        _sync(dev)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    del c
    return 2 * n ** 3 * reps / elapsed / 1e12


def machine_peaks(device) -> dict:
    """Measured matmul ceilings (TFLOP/s) in fp32 and, on a CPU that computes bf16 natively or a GPU, in bf16."""
    dev = resolve_device(device)
    out = {"fp32": matmul_peak(dev, torch.float32)}
    if dev.type == "cuda" or cpu_bf16_native():
        out["bf16"] = matmul_peak(dev, torch.bfloat16)
    return out


# ----------------------------------------------------------------------------------------------------- scaling

# The scaling sweep: each axis varied at three points with the others at their middle value (width 16, training batch
# 128, 200 test images, evaluation batch 200). Attacks run a cut budget (SCALING_ATTACK_STEPS): every attack here
# costs the same for every step, so seconds scale linearly to the full budget (reported as s per image per step).
SCALING = {"width": (8, 16, 32), "batch": (64, 128, 256), "images": (100, 200, 400), "eval_batch": (50, 100, 200)}
SCALING_MIDDLE = {"width": 16, "batch": 128, "images": 200, "eval_batch": 200}
SCALING_ATTACK_STEPS = 10
SCALING_METHODS = ("standard", "fbf")


def scaling_attacks(steps: int = SCALING_ATTACK_STEPS) -> dict:
    """The attacks whose cost the sweep measures, at ``steps`` steps each: PGD (one uniform start), GAMA-PGD and
    AutoAttack's APGD-CE (one restart). APGD attacks only the images the model classifies correctly, so the sweep
    labels every image with the model's own prediction: every image is attacked for every iteration, the cost of an
    image that survives (a robust model's)."""
    from .attacks import GAMAPGD
    return {"pgd": PGD(EPS, 2 / 255, steps, start="uniform"),
            "gama": GAMAPGD(EPS, steps, relax_steps=max(1, steps // 4), drops=(int(0.6 * steps), int(0.85 * steps))),
            "apgd_ce": AutoAttack(EPS, version="custom", attacks=("apgd-ce",), apgd_budget=(steps, 1),
                                  batch_size=SCALING_MIDDLE["eval_batch"])}


def _scaling_points(axes: dict, middle: dict) -> list[dict]:
    """Every distinct setting of the sweep: the middle point and each axis's other values."""
    points = [dict(middle)]
    for axis, values in axes.items():
        for v in values:
            p = {**middle, axis: v}
            if p not in points:
                points.append(p)
    return points


def scaling(device: str = "auto", *, model: str = "resnet18", methods: Sequence[str] = SCALING_METHODS,
            axes: dict | None = None, middle: dict | None = None, batches: int = 5, warmup: int = 2,
            attack_steps: int = SCALING_ATTACK_STEPS, log=print) -> dict:
    """How training and attack cost grow with the model's width, the training batch, the number of test images and
    the evaluation batch: each axis of :data:`SCALING` (or ``axes``) at its points with the others at
    :data:`SCALING_MIDDLE` (or ``middle``). Training: ``batches`` timed steps of each method after ``warmup`` (images/s, seconds per
    pass per image); attacks (:func:`scaling_attacks`, untrained model, fixed-cost steps): seconds for the images and
    seconds per image per step. Returns the document :func:`scaling_markdown` and :func:`plot_scaling` read."""
    axes = dict(SCALING if axes is None else axes)
    middle = {**SCALING_MIDDLE, **(middle or {})}
    unknown = (set(axes) | set(middle)) - set(SCALING)
    if unknown:
        raise UnknownNameError("scaling axis", sorted(unknown)[0], SCALING)
    bad = [m for m in methods if m not in _method_specs()]
    if bad:
        raise UnknownNameError("benchmark method", bad[0], _method_specs())
    if any(len(v) < 1 or any(int(x) < 1 for x in v) for v in axes.values()) or min(middle.values()) < 1:
        raise ConfigError(f"every scaling axis needs positive points, got {axes} around {middle}")
    dev = resolve_device(device)
    train_rows, attack_rows = [], []
    train_axes = {k: v for k, v in axes.items() if k in ("width", "batch")}
    seen = set()
    for p in _scaling_points(train_axes, middle):
        key = (p["width"], p["batch"])
        if key in seen:
            continue
        seen.add(key)
        for m in methods:
            log(f"[scaling] train {m}: width {p['width']}, batch {p['batch']}")
            r = bench_training(m, device=dev, model=model, model_kwargs={"width": p["width"]}, batches=batches,
                               warmup=warmup, batch_size=p["batch"])
            train_rows.append({"method": m, "width": p["width"], "batch": p["batch"],
                               "images_per_s": r["images_per_s"], "passes_per_sample": r["passes_per_sample"],
                               "s_per_pass_image": 1 / (r["images_per_s"] * r["passes_per_sample"]),
                               "gflop_per_image": r["gflop_per_image"], "precision": r["precision"]})
    attack_axes = {k: v for k, v in axes.items() if k in ("width", "images", "eval_batch")}
    nets: dict[int, torch.nn.Module] = {}
    seen = set()
    for p in _scaling_points(attack_axes, middle):
        key = (p["width"], p["images"], p["eval_batch"])
        if key in seen:
            continue
        seen.add(key)
        if p["width"] not in nets:
            torch.manual_seed(0)
            nets[p["width"]] = build_model(model, width=p["width"]).to(dev).eval()
        net = nets[p["width"]]
        data = load_dataset("synthetic", "test", n=p["images"], size=32)
        x = data.x.float().div(255).to(dev)
        with torch.no_grad():
            y = torch.cat([net(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
        log(f"[scaling] attacks: width {p['width']}, {p['images']} images, batch {p['eval_batch']}")
        atk = scaling_attacks(attack_steps)
        atk["apgd_ce"].batch_size = p["eval_batch"]
        res = evaluate(net, (x, y), atk, batch_size=p["eval_batch"], device=dev, progress=False)
        attacked = res.accuracies()["clean"] / 100      # the images APGD attacks: all of them, by the labels
        for name in atk:
            s = res.seconds[name]
            attack_rows.append({"attack": name, "width": p["width"], "images": p["images"],
                                "eval_batch": p["eval_batch"], "steps": attack_steps, "seconds": s,
                                "ms_per_image_step": 1000 * s / (p["images"] * attack_steps),
                                "attacked_fraction": attacked})
    return {"paper": "bench-scaling", "hardware": hardware_info(dev), "versions": package_versions(), "model": model,
            "axes": {k: list(v) for k, v in axes.items()}, "middle": middle, "batches": batches,
            "warmup": warmup, "attack_steps": attack_steps, "train": train_rows, "attacks": attack_rows,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def growth(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The exponent k of y ∝ x^k fitted by least squares on log–log axes (1 = linear growth)."""
    import numpy as np
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    if len(lx) < 2 or np.ptp(lx) == 0:
        raise ConfigError("a growth exponent needs at least two distinct points")
    return float(np.polyfit(lx, ly, 1)[0])


def _axis_rows(rows: list[dict], axis: str, middle: dict, fixed: Sequence[str]) -> list[dict]:
    """The rows of one axis: the others at their middle value."""
    return sorted([r for r in rows if all(r[k] == middle[k] for k in fixed if k != axis)], key=lambda r: r[axis])


def _with_growth(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (one row per point of an axis) with a last row "growth exponent": :func:`growth` per column."""
    exps = [growth(df.index.astype(float), df[c]) if len(df) > 1 else float("nan") for c in df.columns]
    df.loc["growth exponent"] = exps
    return df


def scaling_frames(doc: dict) -> dict[str, pd.DataFrame]:
    """Per axis, a table of the measured cost and its growth exponent: ``train_<axis>`` (seconds per epoch of 50 000
    images, per method) and ``attack_<axis>`` (seconds for the axis's images at the measured steps, per attack)."""
    out, mid = {}, doc["middle"]
    for axis in [a for a in ("width", "batch") if a in doc["axes"]]:
        rows = _axis_rows(doc["train"], axis, mid, ("width", "batch"))
        out[f"train_{axis}"] = _with_growth(pd.DataFrame(
            [{"method": r["method"], axis: r[axis], "s per epoch": 50_000 / r["images_per_s"]} for r in rows]
        ).pivot(index=axis, columns="method", values="s per epoch"))
    for axis in [a for a in ("width", "images", "eval_batch") if a in doc["axes"]]:
        rows = _axis_rows(doc["attacks"], axis, mid, ("width", "images", "eval_batch"))
        out[f"attack_{axis}"] = _with_growth(pd.DataFrame(
            [{"attack": r["attack"], axis: r[axis], "seconds": r["seconds"]} for r in rows]
        ).pivot(index=axis, columns="attack", values="seconds"))
    return out


AXIS_TITLES = {"width": "first-stage width", "batch": "training batch", "images": "test images",
               "eval_batch": "evaluation batch"}


def scaling_markdown(doc: dict) -> str:
    """The sweep as Markdown tables (what the performance appendix includes)."""
    hw = hardware_label(doc["hardware"])
    mid = doc["middle"]
    lines = [f"Measured on **{hw}**, model `{doc['model']}`, torch {doc['versions'].get('torch')}, {doc['created']}. "
             f"Each axis varies with the others at width {mid['width']}, training batch {mid['batch']}, "
             f"{mid['images']} test images, evaluation batch {mid['eval_batch']}. Training: {doc['batches']} timed "
             f"steps after {doc['warmup']}, synthetic CIFAR-shaped images, robustlib's Trainer (precision as it "
             f"resolves here); attacks: {doc['attack_steps']} steps each on an untrained model, every image "
             "attacked at every step. The growth exponent k fits cost ∝ x^k (1 = linear).", ""]
    for name, df in scaling_frames(doc).items():
        kind, axis = name.split("_", 1)
        unit = "seconds per epoch of 50 000 images" if kind == "train" else \
            f"seconds for the images ({doc['attack_steps']} steps)"
        lines += [f"**{'Training' if kind == 'train' else 'Attacks'} against the {AXIS_TITLES[axis]}** ({unit})", ""]
        cols = list(df.columns)
        lines += ["| " + AXIS_TITLES[axis] + " | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for idx, r in df.iterrows():
            fmt = (lambda v: f"{v:.2f}") if idx == "growth exponent" else (lambda v: f"{v:.1f}")
            lines.append(f"| {idx} | " + " | ".join(fmt(r[c]) for c in cols) + " |")
        lines.append("")
    return "\n".join(lines).rstrip()


def plot_scaling(doc: dict):
    """One panel per axis: cost against the axis on log–log axes, one line per method or attack."""
    import matplotlib.pyplot as plt
    frames = scaling_frames(doc)
    fig, axs = plt.subplots(1, len(frames), figsize=(3.6 * len(frames), 3.2), squeeze=False)
    for ax, (name, df) in zip(axs[0], frames.items()):
        kind, axis = name.split("_", 1)
        d = df.drop(index="growth exponent")
        for c in d.columns:
            k = df.loc["growth exponent", c]
            ax.plot(d.index.astype(float), d[c], marker="o", label=f"{c} (k = {k:.2f})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(d.index.astype(float), [str(int(v)) for v in d.index])
        ax.set_xlabel(AXIS_TITLES[axis])
        ax.set_ylabel("s per epoch" if kind == "train" else "attack seconds")
        ax.set_title(("training" if kind == "train" else "attacks") + f" vs {AXIS_TITLES[axis]}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def run_scaling(device: str = "auto", *, out: str | Path | None = None, log=print, **kw) -> dict:
    """:func:`scaling`, written as JSON (``out``) with its Markdown tables and figure (``.md``, ``.png``) beside."""
    doc = scaling(device, log=log, **kw)
    out = _write(doc, scaling_markdown(doc), out, log)
    if out is not None:
        fig = plot_scaling(doc)
        fig.savefig(out.with_suffix(".png"), dpi=120)
        import matplotlib.pyplot as plt
        plt.close(fig)
    return doc


def run(device: str = "auto", methods: Sequence[str] | None = None, *, model: str = "resnet18",
        model_kwargs: dict | None = None, batches: int = 20, warmup: int = 3, eval_images: int = 1000,
        autoattack: bool = True, compile: dict | None = None, out: str | Path | None = None, log=print,
        eval_train_steps: int = 200, eval_checkpoint: str | Path | None = None, reference: bool = False,
        rounds: int = 1, reference_workers: int | None = None, evaluation: bool = True,
        batch_size: int | None = None) -> dict:
    """Run the benchmark; returns (and optionally writes) the results dict.

    ``reference=True`` times each method that has a reference loop (:data:`REFERENCE_STEPS`) against
    :class:`ReferenceLoop` too (:func:`bench_pair`), the others alone; ``evaluation=False`` skips the attack timings; ``batch_size`` replaces the papers'
    batch sizes (for quick checks)."""
    dev = resolve_device(device)
    specs = _method_specs()
    methods = list(methods or specs)
    unknown = [m for m in methods if m not in specs]
    if unknown:
        raise UnknownNameError("benchmark method", unknown[0], specs)
    hw = hardware_info(dev)
    rows = []
    for m in methods:
        paired = reference and m in REFERENCE_STEPS
        log(f"[bench] {m}{' and its reference loop' if paired else ''} …")
        if paired:
            rows.append(bench_pair(m, device=dev, model=model, model_kwargs=model_kwargs, batches=batches,
                                   warmup=warmup, rounds=rounds, compile=compile, workers=reference_workers,
                                   batch_size=batch_size))
        else:
            rows.append(bench_training(m, device=dev, model=model, model_kwargs=model_kwargs, batches=batches,
                                       warmup=warmup, compile=compile, batch_size=batch_size))
    peak, peak_source, peaks = peak_tflops(hw), "vendor dense bf16 figure", None
    if peak is None:                # no vendor figure (CPUs): this machine's measured matmul ceiling
        peaks = machine_peaks(dev)
        peak_source = "measured matmul ceiling in the training precision"
    for r in rows:
        p = peak if peaks is None else peaks.get(r["precision"]["amp"], peaks["fp32"])
        r["peak_tflops"] = p
        r["peak_fraction"] = r["tflops"] / p if p else None
    ev = {}
    if evaluation:
        log("[bench] evaluation …")
        ev = bench_evaluation(device=dev, model=model, model_kwargs=model_kwargs, n=eval_images,
                              autoattack=autoattack, train_steps=eval_train_steps, checkpoint=eval_checkpoint)
    amps = sorted({r["precision"]["amp"] for r in rows})
    doc = {"paper": "bench", "hardware": hw, "versions": package_versions(), "model": model,
           "model_kwargs": model_kwargs or {}, "amp": "/".join(amps) if amps else "–",
           "peak_bf16_tflops": peak, "measured_peaks_tflops": peaks, "peak_source": peak_source, "methods": rows, "reference": reference, **ev,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for r in rows:
        doc[f"{r['method']}_epoch_s"] = r["epoch_s"]
        doc[f"{r['method']}_images_per_s"] = r["images_per_s"]
        if "speedup" in r:
            doc[f"{r['method']}_reference_images_per_s"] = r["reference_images_per_s"]
            doc[f"{r['method']}_speedup"] = r["speedup"]
    _write(doc, markdown(doc), out, log)
    return doc


def _write(doc: dict, table: str, out: str | Path | None, log) -> Path | None:
    """Print the Markdown ``table``; with ``out``, write ``doc`` there as JSON and the table beside it (``.md``)."""
    log(table)
    if out is None:
        return None
    out = Path(out)
    atomic_write_text(json.dumps(doc, indent=2, default=str), out)
    atomic_write_text(table + "\n", out.with_suffix(".md"))
    return out


def frame(doc: dict) -> pd.DataFrame:
    df = pd.DataFrame(doc["methods"])
    cols = ["method", "batch_size", "images_per_s", "epoch_s", "passes_per_sample", "gflop_per_image", "tflops",
            "peak_fraction"]
    cols += [c for c in ("reference_images_per_s", "speedup") if c in df]
    return df[cols]


def _precision_label(p: dict | None) -> str:
    if not p:
        return "–"
    return p["amp"] + (", channels-last" if p.get("channels_last") else "")


def markdown(doc: dict) -> str:
    """The benchmark as a Markdown table (what the performance appendix includes)."""
    hw = hardware_label(doc["hardware"])
    kw = doc.get("model_kwargs") or {}
    model = f"`{doc['model']}`" + (f" ({', '.join(f'{k}={v}' for k, v in kw.items())})" if kw else "")
    ref = any("speedup" in r for r in doc["methods"])
    head = "| method | batch | images/s | s per epoch | N per sample | GFLOP/image | TFLOP/s | of peak |"
    rule = "|---|---|---|---|---|---|---|---|"
    if ref:
        head += " precision | reference images/s | reference precision | robustlib ÷ reference |"
        rule += "---|---|---|---|"
    lines = [f"Measured on **{hw}**, {doc['amp']}, model {model}, torch {doc['versions'].get('torch')}, "
             f"{doc['created']}.", "", head, rule]
    for r in doc["methods"]:
        frac = f"{100 * r['peak_fraction']:.1f} %" if r.get("peak_fraction") else "–"
        line = (f"| {r['method']} | {r['batch_size']} | {r['images_per_s']:.0f} | {r['epoch_s']:.1f} | "
                f"{r['passes_per_sample']:.0f} | {r['gflop_per_image']:.2f} | {r['tflops']:.2f} | {frac} |")
        if ref:
            if "speedup" in r:
                line += (f" {_precision_label(r.get('precision'))} | {r['reference_images_per_s']:.0f} | "
                         f"{_precision_label(r.get('reference_precision'))}, {r['reference_workers']} workers | "
                         f"{r['speedup']:.2f}× |")
            else:
                line += f" {_precision_label(r.get('precision'))} | – | – | – |"
        lines.append(line)
    peaks = doc.get("measured_peaks_tflops")
    if peaks:
        lines += ["", "Peak: this machine's measured matmul ceiling (2048³ GEMM) in each row's training precision: "
                      + ", ".join(f"{k} {v:.2f} TFLOP/s" for k, v in peaks.items()) + "."]
    elif doc.get("peak_bf16_tflops"):
        lines += ["", f"Peak: {doc['peak_bf16_tflops']:.0f} TFLOP/s dense bf16 ({doc.get('peak_source', 'vendor')})."]
    if ref:
        lines += ["", "Reference: the authors' scripts' loop (torchvision `DataLoader` over PIL images with "
                      "RandomCrop/RandomHorizontalFlip/ToTensor, fp32, eager, SGD), same model, batch and steps, "
                      "timed in the same run, interleaved with robustlib's loop."]
    if "pgd20_1000_s" in doc:
        aa = ""
        if "autoattack_1000_s" in doc:
            aa = f", AutoAttack (standard) {doc['autoattack_1000_s']:.1f} s (robust accuracy {doc['eval_aa']:.1f} %)"
        lines += ["", f"Evaluation, scaled to 1 000 images (measured on {doc['eval_images']}; model: "
                      f"{doc['eval_model']}, clean {doc['eval_clean']:.1f} %, PGD-20 {doc['eval_pgd20']:.1f} %): "
                      f"PGD-20 {doc['pgd20_1000_s']:.1f} s{aa}."]
    return "\n".join(lines)
