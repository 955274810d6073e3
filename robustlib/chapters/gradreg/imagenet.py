"""ImageNet-1k rows of the gradreg chapter: the authors' ResNet-50 trained through the one Trainer from an image
folder streamed from disk, and its top-1/top-5 error and ℓ∞ minimum distances.

**Why a stream.** The Trainer's :class:`~robustlib.data.BatchIterator` keeps the training set on the device as uint8.
ImageNet-1k's 1.28 M training images take ≈ 193 GB at 224 px — more than one H200 holds (≈ 139 GiB) and more than the
128 GB of host memory that loading them would need (the npz route of :mod:`robustlib.imagefolder` fits ImageNet-100,
not ImageNet-1k). :class:`ImageFolderStream` is a data source the Trainer can use instead: it carries the dataset's
identity (``name``, ``y``, ``len``: what the run's fingerprint hashes) and hands the Trainer a batch iterator
(``len``, ``epoch(e)``) that decodes, crops and flips images in DataLoader workers. Each image's augmentation is drawn
from a generator seeded by (seed, epoch, index), so an epoch's batches do not depend on the number of workers and a
resumed run sees the same batches.

The Trainer asks a data source for its ``batch_iterator(batch_size, device=, shuffle=, augment=, drop_last=, seed=,
shards=, rank=)`` when it has one (else it builds a BatchIterator) — see :data:`TRAINER_CHANGE`.

**The recipe** (tulip ``imagenet/train.py``, a modification of diux-dev/imagenet18): torchvision's ResNet-50 with the
last BatchNorm of each block zero-initialised (``--init-bn0``), inputs normalised by the loader so that h = 0.01 is in
normalised-input units, SGD momentum 0.9, weight decay 1e-4, the penalty in fp32 with TF32 off. Not reproduced: the
29-epoch DAWNBench schedule with progressive resizing (128 → 224 → 288 px) on four GPUs, and the biases' exemption
from weight decay (the Trainer decays every parameter); here a fixed size, a 2-epoch linear warm-up to
lr·batch/256, then cosine. Expect days on one GPU.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn

from ... import experiment as ex
from ...distances import AttackBudget, error_at, mean_distance, min_distances
from ...errors import ConfigError, NotEnoughDataError
from ...training import TrainConfig
from ...utils import derive_seed, fp32_strict, resolve_device
from .recipes import EPS_2, EPS_8

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# The authors' ImageNet-1k models (poster table, arXiv v1 Table 5.1); the shared recipe below.
IMAGENET_RECIPES = {
    "ImageNet-1k Undefended": {"method": "standard", "hp": {}},
    "ImageNet-1k squared l2 lambda=0.1": {"method": "fd_gradreg", "hp": {"lam": 0.1, "h": 0.01, "norm": "l2"}},
    "ImageNet-1k squared l2 lambda=1": {"method": "fd_gradreg", "hp": {"lam": 1.0, "h": 0.01, "norm": "l2"}},
}
IMAGENET_TRAINING = {"arch": "resnet50", "epochs": 29, "batch": 256, "lr": 0.1, "warmup": 2, "momentum": 0.9,
                     "weight_decay": 1e-4, "image_size": 224, "scale": (0.35, 1.0),
                     "source": "tulip imagenet/train.py --tikhonov (diux-dev/imagenet18): ResNet-50, --init-bn0, "
                               "29 epochs 128→224→288 px on 4 GPUs, SGD 0.9, wd 1e-4 without biases, h = 0.01"}

TRAINER_CHANGE = """\
# robustlib/training.py, Trainer.__init__: ask a streaming data source for its batches
make = getattr(train_data, "batch_iterator", None) or functools.partial(BatchIterator, train_data)
self.batches = make(config.batch_size, device=self.device, shuffle=True, augment=config.augment, drop_last=True,
                    seed=config.seed, shards=shards, rank=self.rank if self.world > 1 else None)"""

IMAGENET_COMMAND = """\
python - <<'EOF'
from robustlib.chapters.gradreg import imagenet
t = imagenet.train_imagenet('/path/to/imagenet/train', 'runs/imagenet', label='ImageNet-1k squared l2 lambda=0.1')
print(imagenet.evaluate_imagenet('/path/to/imagenet/val', t, n=1000))
EOF"""


# ------------------------------------------------------------------------------------------------- the stream


def crop_box(w: int, h: int, scale, ratio, g: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a RandomResizedCrop drawn from ``g`` (torchvision's algorithm: 10 tries of an
    area in ``scale`` and a log-uniform aspect ratio in ``ratio``, then a centre crop at the nearest ratio)."""
    area = w * h
    lr0, lr1 = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * (scale[0] + (scale[1] - scale[0]) * float(torch.rand(1, generator=g)))
        ar = math.exp(lr0 + (lr1 - lr0) * float(torch.rand(1, generator=g)))
        cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=g))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=g))
            return top, left, ch, cw
    if w / h < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif w / h > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class _EpochView(torch.utils.data.Dataset):
    """Image i of one epoch: RandomResizedCrop, flip, ToTensor, Normalize, drawn from a generator seeded by
    (seed, epoch, i)."""

    def __init__(self, stream: "ImageFolderStream", seed: int, epoch: int):
        self.stream, self.seed, self.epoch = stream, seed, epoch

    def __len__(self) -> int:
        return len(self.stream)

    def __getitem__(self, i: int):
        from torchvision.transforms import functional as TF
        s = self.stream
        path, label = s.folder.samples[i]
        g = torch.Generator().manual_seed(derive_seed("augment", self.seed, self.epoch, i))
        img = s.folder.loader(path)
        top, left, ch, cw = crop_box(img.width, img.height, s.scale, s.ratio, g)
        img = TF.resized_crop(img, top, left, ch, cw, [s.image_size, s.image_size], antialias=True)
        if s.flip and float(torch.rand(1, generator=g)) < 0.5:
            img = TF.hflip(img)
        return TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD), label


class StreamBatches:
    """What the Trainer iterates: ``len`` batches per epoch, ``epoch(e)`` yields (x, y) on the device."""

    def __init__(self, stream: "ImageFolderStream", batch_size: int, device: torch.device, shuffle: bool, seed: int):
        self.stream, self.batch_size, self.device, self.shuffle, self.seed = stream, batch_size, device, shuffle, seed

    def __len__(self) -> int:
        return len(self.stream) // self.batch_size

    @property
    def num_samples(self) -> int:
        return len(self) * self.batch_size

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.stream)
        g = torch.Generator().manual_seed(derive_seed("batches", self.seed, epoch))
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        batches = order[:len(self) * self.batch_size].view(len(self), self.batch_size).tolist()
        loader = torch.utils.data.DataLoader(_EpochView(self.stream, self.seed, epoch), batch_sampler=batches,
                                             num_workers=self.stream.workers, pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    __iter__ = epoch


class ImageFolderStream:
    """A training set in torchvision's ``ImageFolder`` layout (``<root>/<class>/<image>``), streamed from disk.

    ``name`` includes the crop size and scale, so runs with other augmentation get other fingerprints. Images reach
    the model normalised by the ImageNet mean and std (the authors' loader; h is in normalised units)."""

    split = "train"

    def __init__(self, root: str | Path, *, image_size: int = 224, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3),
                 flip: bool = True, workers: int = 8):
        from torchvision.datasets import ImageFolder
        root = Path(root)
        self.folder = ImageFolder(str(root))
        self.y = torch.tensor(self.folder.targets, dtype=torch.long)
        self.classes = tuple(self.folder.classes)
        self.image_size, self.scale, self.ratio, self.flip, self.workers = image_size, tuple(scale), tuple(ratio), \
            flip, workers
        self.name = (f"imagefolder:{root.resolve().parent.name}/{root.name}@{image_size}px,scale={self.scale},"
                     f"flip={flip}")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def x(self):
        raise ConfigError("ImageFolderStream streams images from disk and holds no image tensor: the Trainer must "
                          "ask it for batch_iterator() (the change in robustlib.chapters.gradreg.imagenet."
                          "TRAINER_CHANGE)")

    def batch_iterator(self, batch_size: int, *, device, shuffle: bool = True, augment=None, drop_last: bool = True,
                       seed: int = 0, shards: int = 1, rank: int | None = None) -> StreamBatches:
        if augment is not None:
            raise ConfigError("ImageFolderStream augments while decoding (RandomResizedCrop, flip): train with "
                              "TrainConfig(augment=None)")
        if shards != 1 or rank is not None:
            raise ConfigError("ImageFolderStream feeds one process; data-parallel streaming is not implemented")
        if not drop_last:
            raise ConfigError("ImageFolderStream yields full batches only (drop_last=True)")
        if len(self) < batch_size:
            raise NotEnoughDataError(f"{self.name} holds {len(self)} images, fewer than one batch of {batch_size}")
        return StreamBatches(self, batch_size, torch.device(device), shuffle, seed)


# ---------------------------------------------------------------------------------------------- train, evaluate


def resnet(arch: str = "resnet50", num_classes: int = 1000, smooth: bool = False) -> nn.Module:
    """torchvision's ResNet with the last BN of each block zero-initialised (``--init-bn0``); ``smooth`` replaces
    every ReLU by the C² smooth ReLU of the curvature bound."""
    import torchvision
    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes, zero_init_residual=True)
    if smooth:
        from ...models.resnext import SmoothReLU
        for mod in list(net.modules()):
            for cname, child in list(mod.named_children()):
                if isinstance(child, nn.ReLU):
                    setattr(mod, cname, SmoothReLU())
    return net


def imagenet_spec(label: str = "ImageNet-1k squared l2 lambda=0.1", *, num_classes: int = 1000,
                  arch: str | None = None, smooth: bool = False, epochs: int | None = None,
                  batch_size: int | None = None, lr: float | None = None, max_batches: int | None = None,
                  seed: int = 0, **hp) -> ex.RunSpec:
    """The RunSpec of an IMAGENET_RECIPES row (``hp`` overrides the method's hyperparameters)."""
    if label not in IMAGENET_RECIPES:
        raise ConfigError(f"unknown ImageNet row {label!r}; valid: {', '.join(IMAGENET_RECIPES)}")
    r, T = IMAGENET_RECIPES[label], IMAGENET_TRAINING
    arch, epochs = arch or T["arch"], epochs or T["epochs"]
    batch_size = batch_size or T["batch"]
    peak = (lr or T["lr"]) * batch_size / 256
    tc = TrainConfig(epochs=epochs, batch_size=batch_size, lr=peak, momentum=T["momentum"],
                     schedule={"name": "cosine", "lr": peak, "epochs": epochs, "warmup": min(T["warmup"], epochs)},
                     weight_decay=T["weight_decay"], augment=None, seed=seed, max_batches=max_batches,
                     amp="off" if r["method"] != "standard" else "auto")
    return ex.RunSpec(alias=f"gradreg-{ex.slug(label)}{'-smooth' if smooth else ''}", label=label,
                      method=r["method"], hp={**r["hp"], **hp}, model=f"torchvision.{arch}{'-smooth' * smooth}",
                      model_kw={"num_classes": num_classes}, config=tc, source=T["source"],
                      build=lambda: resnet(arch, num_classes, smooth))


def train_imagenet(train_dir: str, root: str, *, label: str = "ImageNet-1k squared l2 lambda=0.1",
                   image_size: int | None = None, workers: int = 8, device: str = "auto", progress: bool = True,
                   **spec_kw) -> ex.Trained:
    """Train an ImageNet row on a folder through the experiment layer (checkpoints in ``<root>/<alias>-<fp>``; a
    finished run is reopened, an interrupted one resumed). ``spec_kw`` go to :func:`imagenet_spec`."""
    stream = ImageFolderStream(train_dir, image_size=image_size or IMAGENET_TRAINING["image_size"],
                               scale=IMAGENET_TRAINING["scale"], workers=workers)
    spec = imagenet_spec(label, num_classes=stream.num_classes, **spec_kw)
    dev = resolve_device(device)
    if spec.config.amp == "off":
        with fp32_strict():
            return ex.train(spec, stream, root, device=dev, progress=progress)
    return ex.train(spec, stream, root, device=dev, progress=progress)


def evaluate_imagenet(val_dir: str, trained: ex.Trained, *, n: int = 1000, image_size: int = 288,
                      budget: AttackBudget | None = None, device: str = "auto", seed: int = 0) -> dict:
    """Top-1/top-5 clean error and the ℓ∞ minimum-distance statistics on ``n`` random validation images (resize to
    1.14·size, centre crop; the normalisation moves inside the model so that attacks work in [0, 1] pixels), cached
    beside the run's checkpoint. The paper counts an image as broken when the label leaves the *top 5*; PGD-bisection
    and FAB here use top-1 misclassification, so the distances are smaller than the paper's."""
    import torchvision
    from torchvision import transforms as T
    from ...models.norm import Normalize
    dev = resolve_device(device)
    budget = budget or AttackBudget("linf", eps_max=8 / 255, pgd_steps=10, bisect_steps=8, anchors=(EPS_2,),
                                    fab_iter=30, batch_size=100)

    def compute() -> dict:
        model = nn.Sequential(Normalize(IMAGENET_MEAN, IMAGENET_STD), trained.model()).to(dev).eval()
        ds = torchvision.datasets.ImageFolder(val_dir, transform=T.Compose([
            T.Resize(int(image_size * 1.14)), T.CenterCrop(image_size), T.ToTensor()]))
        k = min(n, len(ds))
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:k].tolist()
        xs, ys = zip(*[ds[i] for i in idx])
        x, y = torch.stack(xs).to(dev), torch.tensor(ys).to(dev)
        with torch.no_grad():
            top5 = torch.cat([model(x[i:i + 100]).topk(min(5, len(ds.classes)), 1).indices for i in range(0, k, 100)])
        d = min_distances(model, x, y, budget, seed=seed)["best"].to_numpy()
        return {"best": d, "top1_wrong": (top5[:, 0] != y).cpu().numpy(),
                "top5_wrong": (top5 != y[:, None]).all(1).cpu().numpy()}

    what = {"evaluation": "imagenet val", "val": str(Path(val_dir).resolve()), "n": n, "size": image_size,
            "budget": repr(budget), "seed": seed}
    v = ex.cached(trained, what, compute)
    d = v["best"]
    return {"n": len(d), "top1_err": 100 * float(v["top1_wrong"].mean()),
            "top5_err": 100 * float(v["top5_wrong"].mean()), "err_2": error_at(d, EPS_2), "err_8": error_at(d, EPS_8),
            "mean_dist": mean_distance(d, cap=1.0)}
