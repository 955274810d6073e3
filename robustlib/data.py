"""Datasets as uint8 tensors, and a batch iterator that keeps the data and its augmentation on the device.

Images are stored as ``uint8`` tensors of shape (N, C, H, W) and handed to models as floats in [0, 1]; any mean/std
normalisation lives inside the model, so every ε in this project is in pixel units (8/255 means 8 grey levels).

Two on-disk layouts are read:

* **npz shards**: a folder of ``.npz`` files holding ``x`` (uint8, N×H×W×C) and ``y`` (int64, N), concatenated in
  file-name order (natural order, so ``train-10`` follows ``train-9``). This is the layout of ``../shared/data``.
* **torchvision's standard layouts** (``cifar-10-batches-py/``, ``MNIST/raw/``); with ``download=True`` torchvision
  fetches missing files (it verifies their checksums).

The data root is the ``root`` argument, else the ``ROBUSTLIB_DATA`` environment variable, else ``./data``.
"""
from __future__ import annotations

import gzip
import numbers
import os
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .errors import ConfigError, CorruptFileError, DatasetNotFoundError, NotEnoughDataError
from .registry import Registry
from .utils import derive_seed

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST_CLASSES = tuple(str(i) for i in range(10))

DATASETS: Registry[Callable[..., "ArrayDataset"]] = Registry("dataset")
SPLITS = ("train", "test", "val")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root``, else ``$ROBUSTLIB_DATA``, else ``./data``."""
    return Path(root if root is not None else os.environ.get("ROBUSTLIB_DATA", "data")).expanduser()


@dataclass(frozen=True)
class ArrayDataset:
    """Images ``x`` (uint8, N×C×H×W) with integer labels ``y``; ``full_size`` is the size of the complete split."""

    x: torch.Tensor
    y: torch.Tensor
    name: str
    split: str
    classes: tuple[str, ...]
    source: str = ""
    full_size: int | None = None
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.x.dtype != torch.uint8 or self.x.ndim != 4:
            raise ConfigError(f"{self.name}: x must be uint8 N×C×H×W, got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.ndim != 1 or len(self.y) != len(self.x):
            raise ConfigError(f"{self.name}: y must be a vector of {len(self.x)} labels, got {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    def subset(self, index: torch.Tensor | Sequence[int] | slice) -> "ArrayDataset":
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        return replace(self, x=self.x[index], y=self.y[index])

    def head(self, n: int | None) -> "ArrayDataset":
        """The first ``n`` images (all when ``n`` is None); asking for more than exist raises an error."""
        if n is None:
            return self
        if n > len(self):
            full = f" of the {self.full_size} in the full split" if self.full_size and self.full_size > len(self) else ""
            raise NotEnoughDataError(
                f"asked for {n} {self.name} {self.split} images, but the copy at {self.source or 'memory'} holds "
                f"only {len(self)}{full}. Use n ≤ {len(self)}"
                + (" or point ROBUSTLIB_DATA at a complete copy." if full else "."))
        return self.subset(slice(0, n))

    def to(self, device: torch.device | str) -> "ArrayDataset":
        return replace(self, x=self.x.to(device), y=self.y.to(device))

    def images(self, device: torch.device | str | None = None) -> torch.Tensor:
        """All images as float32 in [0, 1]."""
        x = self.x if device is None else self.x.to(device)
        return x.float().div_(255)

    def describe(self) -> str:
        c, h, w = self.image_shape
        return f"{self.name} {self.split}: {len(self)} images {c}×{h}×{w}, {self.num_classes} classes ({self.source})"


def load_dataset(name: str, split: str = "train", root: str | os.PathLike | None = None, *,
                 download: bool = False, limit: int | None = None, **kwargs) -> ArrayDataset:
    """Load ``split`` of dataset ``name`` (see ``DATASETS.names()``); ``limit`` keeps the first images only."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    loader = DATASETS.get(name)
    ds = loader(split=split, root=data_root(root), download=download, limit=limit, **kwargs)
    return ds.head(limit) if limit is not None and limit < len(ds) else ds


# ----------------------------------------------------------------------------------------------------------- npz


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)]


def find_shards(folder: Path, stem: str) -> list[Path]:
    """``<stem>.npz`` or ``<stem>-*.npz`` in ``folder``, in natural file-name order."""
    files = sorted(folder.glob(f"{stem}-*.npz"), key=_natural_key)
    single = folder / f"{stem}.npz"
    return ([single] if single.exists() else []) + files


def read_npz_shards(files: Sequence[Path], limit: int | None = None, keys: Sequence[str] = ()) -> dict:
    """Read and concatenate ``x``/``y`` from npz shards (stopping once ``limit`` images are read).

    A shard that cannot be read (e.g. truncated) or whose arrays have the wrong dtype/shape raises
    :class:`CorruptFileError` naming the file; nothing is returned in that case.
    """
    xs, ys, extra = [], [], {}
    n = 0
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as z:
                if "x" not in z or "y" not in z:
                    raise CorruptFileError(f"shard {f} lacks the arrays 'x' and 'y' (has: {', '.join(z.files)})")
                x, y = z["x"], z["y"]
                for k in keys:
                    if k in z and k not in extra:
                        extra[k] = z[k]
        except CorruptFileError:
            raise
        except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as e:
            raise CorruptFileError(f"shard {f} cannot be read ({type(e).__name__}: {e}); it is probably truncated "
                                   "or corrupt: replace it with a good copy") from e
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise CorruptFileError(f"shard {f}: x must be uint8 N×H×W×C with C in (1, 3), got {x.dtype} {x.shape}")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise CorruptFileError(f"shard {f}: y must be {len(x)} integer labels, got {y.dtype} {y.shape}")
        xs.append(x)
        ys.append(y.astype(np.int64))
        n += len(x)
        if limit is not None and n >= limit:
            break
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return {"x": torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), "y": torch.from_numpy(y), **extra}


def _check_labels(name: str, y: torch.Tensor, num_classes: int, source: str):
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise CorruptFileError(f"{name} at {source}: labels must lie in [0, {num_classes}), "
                               f"found [{int(y.min())}, {int(y.max())}]")


def _not_found(what: str, looked: list[str], hint: str) -> DatasetNotFoundError:
    places = "\n  ".join(looked)
    return DatasetNotFoundError(f"{what} not found. Looked in:\n  {places}\n{hint}")


_ROOT_HINT = ("Set ROBUSTLIB_DATA (or pass root=) to the folder that holds it — in this project that is "
              "../shared/data — or pass download=True to fetch it with torchvision (needs internet).")


# ------------------------------------------------------------------------------------------------------ CIFAR-10


@DATASETS.register("cifar10")
def load_cifar10(split: str, root: Path, download: bool = False, limit: int | None = None) -> ArrayDataset:
    """CIFAR-10 (Krizhevsky 2009). ``val`` is not a CIFAR split: use :func:`holdout_split` on ``train``."""
    if split == "val":
        raise ConfigError("CIFAR-10 has no 'val' split; use holdout_split(load_dataset('cifar10', 'train'))")
    stem = "train" if split == "train" else "test"
    full = 50000 if split == "train" else 10000
    shards = find_shards(root / "cifar10", stem)
    if shards:
        d = read_npz_shards(shards, limit)
        src = str(root / "cifar10")
    else:
        tv_dir = root / "cifar-10-batches-py"
        if not tv_dir.exists() and download:
            from torchvision.datasets import CIFAR10
            CIFAR10(str(root), train=(split == "train"), download=True)  # verifies the archive's md5
        if not tv_dir.exists():
            raise _not_found(f"CIFAR-10 {split} split",
                             [f"{root / 'cifar10'}/{stem}*.npz (npz shards)", f"{tv_dir} (torchvision layout)"],
                             _ROOT_HINT)
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        d = _read_cifar_pickles([tv_dir / n for n in names], limit)
        src = str(tv_dir)
    _check_labels("CIFAR-10", d["y"], 10, src)
    notes = ()
    if split == "test" and len(d["y"]) < full and limit is None:
        notes = (f"only the first {len(d['y'])} of the {full} CIFAR-10 test images are present",)
    return ArrayDataset(d["x"], d["y"], "cifar10", split, CIFAR10_CLASSES, src, full, notes)


def _read_cifar_pickles(files: Sequence[Path], limit: int | None) -> dict:
    """Read CIFAR-10 python batches (torchvision's ``cifar-10-batches-py`` layout)."""
    import pickle
    xs, ys, n = [], [], 0
    for f in files:
        if not f.exists():
            raise DatasetNotFoundError(f"CIFAR-10 batch {f} is missing from the torchvision layout")
        try:
            with open(f, "rb") as fh:
                entry = pickle.load(fh, encoding="latin1")
            x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(entry.get("labels", entry.get("fine_labels")), dtype=np.int64)
        except Exception as e:
            raise CorruptFileError(f"CIFAR-10 batch {f} cannot be read ({type(e).__name__}: {e})") from e
        if len(x) != len(y):
            raise CorruptFileError(f"CIFAR-10 batch {f}: {len(x)} images but {len(y)} labels")
        xs.append(x)
        ys.append(y)
        n += len(x)
        if limit is not None and n >= limit:
            break
    x, y = np.concatenate(xs), np.concatenate(ys)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return {"x": torch.from_numpy(np.ascontiguousarray(x)), "y": torch.from_numpy(y)}


# --------------------------------------------------------------------------------------------------------- MNIST


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise CorruptFileError(f"{path} cannot be read ({type(e).__name__}: {e})") from e
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise CorruptFileError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise CorruptFileError(f"{path} holds {body.size} bytes of data, expected {int(np.prod(dims))} for {dims}")
    return body.reshape(dims)


@DATASETS.register("mnist")
def load_mnist(split: str, root: Path, download: bool = False, limit: int | None = None) -> ArrayDataset:
    """MNIST (LeCun et al. 1998) from torchvision's raw layout ``<root>/MNIST/raw`` (read directly, no extraction)."""
    if split == "val":
        raise ConfigError("MNIST has no 'val' split; use holdout_split(load_dataset('mnist', 'train'))")
    raw = root / "MNIST" / "raw"
    prefix = "train" if split == "train" else "t10k"

    def find(kind: str) -> Path | None:
        for suffix in (".gz", ""):
            p = raw / f"{prefix}-{kind}-ubyte{suffix}"
            if p.exists():
                return p
        return None

    img, lab = find("images-idx3"), find("labels-idx1")
    if (img is None or lab is None) and download:
        from torchvision.datasets import MNIST
        MNIST(str(root), train=(split == "train"), download=True)
        img, lab = find("images-idx3"), find("labels-idx1")
    if img is None or lab is None:
        raise _not_found(f"MNIST {split} split", [f"{raw}/{prefix}-images-idx3-ubyte[.gz] and "
                                                  f"{prefix}-labels-idx1-ubyte[.gz] (torchvision layout)"], _ROOT_HINT)
    x = torch.from_numpy(_read_idx(img).copy())[:, None]
    y = torch.from_numpy(_read_idx(lab).astype(np.int64))
    if len(x) != len(y):
        raise CorruptFileError(f"MNIST {split}: {img} holds {len(x)} images but {lab} holds {len(y)} labels")
    _check_labels("MNIST", y, 10, str(raw))
    return ArrayDataset(x, y, "mnist", split, MNIST_CLASSES, str(raw), 60000 if split == "train" else 10000)


# ------------------------------------------------------------------------------------------------ Tiny-ImageNet


@DATASETS.register("tinyimagenet32")
def load_tinyimagenet32(split: str, root: Path, download: bool = False, limit: int | None = None) -> ArrayDataset:
    """The 32×32 Tiny-ImageNet subset (200 classes) in ``<root>/tinyimagenet32``: ``train-*.npz`` and ``val.npz``."""
    folder = root / "tinyimagenet32"
    if split == "test":
        raise ConfigError("Tiny-ImageNet's test split is unlabelled and not included; use split='val'")
    shards = find_shards(folder, split)
    if not shards:
        raise _not_found(f"Tiny-ImageNet-32 {split} split", [f"{folder}/{split}*.npz (npz shards)"],
                         "Set ROBUSTLIB_DATA to the folder holding tinyimagenet32/ (../shared/data in this project); "
                         "torchvision cannot download this subset.")
    d = read_npz_shards(shards, limit, keys=("class_names", "classes"))
    names = d.get("class_names", d.get("classes"))
    classes = tuple(str(c) for c in names) if names is not None else tuple(str(i) for i in range(200))
    _check_labels("Tiny-ImageNet-32", d["y"], len(classes), str(folder))
    return ArrayDataset(d["x"], d["y"], "tinyimagenet32", split, classes, str(folder), None)


# ------------------------------------------------------------------------------------------------------- folder


@DATASETS.register("npz")
def load_npz_folder(split: str, root: Path, download: bool = False, limit: int | None = None,
                    folder: str | os.PathLike | None = None, classes: Sequence[str] | None = None) -> ArrayDataset:
    """Any dataset stored as ``<folder>/<split>*.npz`` shards (e.g. ImageNet-100 converted by
    :func:`robustlib.imagefolder.convert_image_folder`)."""
    folder = Path(folder) if folder is not None else root
    shards = find_shards(folder, split)
    if not shards:
        raise _not_found(f"{split} shards", [f"{folder}/{split}*.npz"], "Pass folder= pointing at the shards.")
    d = read_npz_shards(shards, limit, keys=("classes", "class_names"))
    names = classes or d.get("class_names", d.get("classes"))
    k = int(d["y"].max()) + 1 if names is None else len(names)
    names = tuple(str(c) for c in names) if names is not None else tuple(str(i) for i in range(k))
    _check_labels(str(folder), d["y"], len(names), str(folder))
    return ArrayDataset(d["x"], d["y"], folder.name, split, names, str(folder), None)


# ---------------------------------------------------------------------------------------------------- synthetic


@DATASETS.register("synthetic")
def load_synthetic(split: str, root: Path | None = None, download: bool = False, limit: int | None = None,
                   n: int | None = None, num_classes: int = 10, size: int = 16, channels: int = 3,
                   seed: int = 0, robust_amplitude: float = 0.25, brittle_amplitude: float = 6 / 255,
                   noise: float = 0.04) -> ArrayDataset:
    """A deterministic synthetic image dataset for fast tests and a first look at robustness.

    Each class has two label-carrying features (after Ilyas et al., 2019):

    * a *robust* one: a smooth colour pattern of amplitude ``robust_amplitude`` (classes differ by ≈ 2× that in
      ℓ∞, so an ℓ∞ attack must be large to cross between them);
    * a *brittle* one: a ±``brittle_amplitude`` high-frequency pattern, perfectly predictive but tiny, so that a model
      which relies on it can be fooled by ε ≈ ``brittle_amplitude``.

    Standard training uses both; adversarial training with ε above the brittle amplitude must rely on the robust
    one. Train and test images come from disjoint random streams of the same class-conditional distribution.
    """
    n = n if n is not None else {"train": 2000, "test": 500, "val": 500}[split]
    n = min(n, limit) if limit is not None else n
    g = torch.Generator().manual_seed(derive_seed("synthetic-prototypes", seed, num_classes, size, channels))
    coarse = torch.rand(num_classes, channels, 4, 4, generator=g) * 2 - 1
    robust = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    robust = robust / robust.abs().amax(dim=(1, 2, 3), keepdim=True)
    brittle = torch.randint(0, 2, (num_classes, channels, size, size), generator=g).float() * 2 - 1
    gs = torch.Generator().manual_seed(derive_seed("synthetic-samples", seed, split))
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=gs)]
    contrast = 0.75 + 0.25 * torch.rand(n, 1, 1, 1, generator=gs)
    x = (0.5 + robust_amplitude * contrast * robust[y] + brittle_amplitude * brittle[y]
         + noise * torch.randn(n, channels, size, size, generator=gs))
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    classes = tuple(f"class{i}" for i in range(num_classes))
    return ArrayDataset(x, y, "synthetic", split, classes, f"synthetic(seed={seed})", n)


# ------------------------------------------------------------------------------------------------------ splits


def holdout_split(data: ArrayDataset, per_class: int = 100) -> tuple[ArrayDataset, ArrayDataset]:
    """Split off the first ``per_class`` images of each class (in dataset order) as a validation set.

    This is NuAT's and GAT's split: on CIFAR-10 it removes 1 000 images and leaves 49 000 for training. Returns
    ``(train, val)``; both keep the dataset order.
    """
    if per_class < 0:
        raise ConfigError(f"per_class must be ≥ 0, got {per_class}")
    y = data.y
    counts = torch.bincount(y, minlength=data.num_classes)
    if per_class and int(counts.min()) <= per_class:
        raise NotEnoughDataError(f"holdout_split: class {int(counts.argmin())} has only {int(counts.min())} images, "
                                 f"cannot hold out {per_class} per class and keep some for training")
    # rank of each image within its class, in dataset order
    onehot = torch.nn.functional.one_hot(y, data.num_classes)
    rank = (onehot.cumsum(0) * onehot).sum(1) - 1
    val_mask = rank < per_class
    val_idx = torch.nonzero(val_mask).squeeze(1)
    train_idx = torch.nonzero(~val_mask).squeeze(1)
    train = replace(data.subset(train_idx), full_size=len(train_idx))
    val = replace(data.subset(val_idx), split="val", full_size=len(val_idx))
    return train, val


# ----------------------------------------------------------------------------------------------- GPU iteration


@dataclass(frozen=True)
class Augment:
    """Standard CIFAR augmentation done on the device: random crop with padding, horizontal flip, Cutout.

    ``fill`` is the padding value in grey levels (0 in NuAT's code, 128 in Finlay & Oberman's). ``cutout`` is the side
    of a square filled with the patch's mean colour (Finlay & Oberman's "Cutout 16"), drawn as in DeVries & Taylor's
    Cutout: the centre (cy, cx) is uniform over every pixel of the image, [0, H) × [0, W), and the square covers rows
    cy − ⌊side/2⌋ … cy − ⌊side/2⌋ + side − 1 (columns likewise), clipped at the border — exactly side × side pixels
    when it lies inside the image, fewer near the edges.
    """

    crop_padding: int = 4
    fill: int = 0
    flip: bool = True
    cutout: int = 0

    def __post_init__(self):
        if isinstance(self.cutout, bool) or not isinstance(self.cutout, numbers.Integral) or self.cutout < 0:
            raise ConfigError(f"Augment(cutout={self.cutout!r}): the Cutout side must be an int ≥ 0 (0 = off)")

    def sample(self, b: int, h: int, w: int, generator: torch.Generator, device) -> dict[str, torch.Tensor]:
        """Draw the random parameters for a batch of ``b`` images (crop offsets, flips, Cutout centres)."""
        p = self.crop_padding
        out = {"oy": torch.randint(0, 2 * p + 1, (b,), generator=generator, device=device),
               "ox": torch.randint(0, 2 * p + 1, (b,), generator=generator, device=device)}
        if self.flip:
            out["flip"] = torch.rand(b, generator=generator, device=device) < 0.5
        if self.cutout:
            out["cy"] = torch.randint(0, h, (b,), generator=generator, device=device)
            out["cx"] = torch.randint(0, w, (b,), generator=generator, device=device)
        return out

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Augment a uint8 batch (B, C, H, W) with drawn parameters; returns floats in [0, 1]."""
        b, c, h, w = x.shape
        dev = x.device
        p = self.crop_padding
        if p:
            x = torch.nn.functional.pad(x, (p, p, p, p), value=self.fill)
        oy, ox = params["oy"], params["ox"]
        ar_h = torch.arange(h, device=dev)
        ar_w = torch.arange(w, device=dev)
        rows = oy[:, None] + ar_h                                  # (B, H)
        cols = ox[:, None] + ar_w                                  # (B, W)
        if self.flip:
            cols = torch.where(params["flip"][:, None], ox[:, None] + (w - 1 - ar_w), cols)
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        x = x[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
        x = x.float().div_(255)
        if self.cutout:
            cy, cx = params["cy"], params["cx"]
            lo = self.cutout // 2                                  # rows cy − lo … cy − lo + side − 1
            dy = ar_h[None, :] - cy[:, None] + lo
            dx = ar_w[None, :] - cx[:, None] + lo
            mask = (((dy >= 0) & (dy < self.cutout))[:, :, None]
                    & ((dx >= 0) & (dx < self.cutout))[:, None, :])[:, None]  # (B,1,H,W)
            area = mask.sum((2, 3), keepdim=True).clamp_min(1)
            mean = (x * mask).sum((2, 3), keepdim=True) / area
            x = torch.where(mask, mean, x)
        return x

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a uint8 batch (B, C, H, W); returns floats in [0, 1]."""
        return self.apply(x, self.sample(x.shape[0], x.shape[2], x.shape[3], generator, x.device))


class BatchIterator:
    """Shuffled, augmented minibatches from a dataset that lives on ``device``.

    The uint8 images are moved to the device once; each epoch draws its permutation and augmentation from generators
    seeded by ``(seed, epoch)``, so epoch ``e`` is the same whether or not the run was interrupted before it. Nothing
    is computed on the host per batch.

    ``shards = K`` splits the data into K shards (image i belongs to shard i mod K), each permuted and augmented by
    its own generator; every global batch takes ``batch_size / K`` images from each shard. With ``rank = r`` the
    iterator holds and yields only shard r's part — that is what rank r of a K-process run trains on — and with
    ``rank = None`` it yields the whole global batch, so a single process reproduces a K-process run exactly.
    """

    def __init__(self, data: ArrayDataset, batch_size: int, *, device: torch.device | str = "cpu",
                 shuffle: bool = True, augment: Augment | None = None, drop_last: bool = True, seed: int = 0,
                 shards: int = 1, rank: int | None = None):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be ≥ 1, got {batch_size}")
        if shards < 1 or batch_size % shards:
            raise ConfigError(f"batch_size {batch_size} must be a multiple of the number of shards {shards}")
        if rank is not None and not 0 <= rank < shards:
            raise ConfigError(f"rank {rank} is not in [0, {shards})")
        if drop_last and len(data) < batch_size:
            raise NotEnoughDataError(f"{data.name} {data.split} holds {len(data)} images, fewer than one batch of "
                                     f"{batch_size} (drop_last=True); lower the batch size")
        if shards > 1 and not drop_last:
            raise ConfigError("sharded iteration needs drop_last=True")
        self.device = torch.device(device)
        self.shards, self.rank = shards, rank
        self.per_shard = batch_size // shards
        self.shard_len = len(data) // shards       # every shard is cut to the same length
        own = range(shards) if rank is None else [rank]
        self.xs = {s: data.x[s::shards][:self.shard_len].to(self.device) for s in own}
        self.ys = {s: data.y[s::shards][:self.shard_len].to(self.device) for s in own}
        self.n = len(data) if shards == 1 else self.shard_len * shards
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.drop_last, self.seed = drop_last, seed

    @property
    def x(self) -> torch.Tensor:
        return torch.cat([self.xs[s] for s in sorted(self.xs)]) if len(self.xs) > 1 else next(iter(self.xs.values()))

    def __len__(self) -> int:
        if self.shards > 1:
            return self.shard_len // self.per_shard
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self) * self.batch_size if self.drop_last else self.n

    def generator(self, epoch: int, shard: int = 0) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(derive_seed("batches", self.seed, epoch) if self.shards == 1
                      else derive_seed("batches", self.seed, epoch, shard, self.shards))
        return g

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gens = {s: self.generator(epoch, s) for s in self.xs}
        orders = {}
        for s, g in gens.items():
            n = len(self.xs[s])
            orders[s] = torch.randperm(n, generator=g, device=self.device) if self.shuffle else torch.arange(
                n, device=self.device)
        b = self.per_shard if self.shards > 1 else self.batch_size
        for i in range(len(self)):
            xs, ys = [], []
            for s in sorted(self.xs):
                idx = orders[s][i * b:(i + 1) * b]
                xb, yb = self.xs[s][idx], self.ys[s][idx]
                xs.append(self.augment(xb, gens[s]) if self.augment is not None else xb.float().div_(255))
                ys.append(yb)
            yield (xs[0], ys[0]) if len(xs) == 1 else (torch.cat(xs), torch.cat(ys))

    __iter__ = epoch


def iterate(data: ArrayDataset, batch_size: int, device: torch.device | str = "cpu"):
    """Ordered, un-augmented batches of floats in [0, 1] (for evaluation)."""
    return BatchIterator(data, batch_size, device=device, shuffle=False, drop_last=False)
