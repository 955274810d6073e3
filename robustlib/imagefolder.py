"""ImageNet-style image folders (``<root>/<split>/<class id>/<image>``) with a class list, converted to npz shards.

ImageNet-100, as the GAT/NuAT line uses it, is the subset of ImageNet-1k given by a list of 100 WordNet IDs
(val-iisc/GAMA-GAT ``ImageNet -100/ImageNet100_classes.txt``) in folders ``train/``, ``val/`` (checkpoint selection)
and ``test/``. This module turns such a folder into the npz shards that ``load_dataset("npz", split,
folder=...)`` reads, so the rest of robustlib (GPU-resident batches, the Trainer, the evaluator) works unchanged:

    python -m robustlib.imagefolder /data/imagenet100 --classes ImageNet100_classes.txt --out data/imagenet100 \\
        --size 224 --resize 256

* Labels follow the order of the class list (line *i* → label *i*); folders not in the list are ignored, and a class
  of the list without a folder is an error.
* Each image is converted to RGB, its shorter side resized to ``resize`` (bilinear) and center-cropped to ``size`` ×
  ``size`` — the evaluation transform of the GAT code (256 → 224). Training-time RandomResizedCrop is not reproduced:
  robustlib augments the stored crops with random crops (zero padding) and flips on the GPU.
* Shards hold at most ``shard_size`` images (``x`` uint8 N×H×W×3, ``y`` int64, ``class_names``), written as
  ``<split>-0.npz``, ``<split>-1.npz``, … in class-list order; files within a class are sorted by name.

At 224 px, ImageNet-100's ≈ 126 000 training images take ≈ 19 GB of uint8 (≈ 1.2 GB at 64 px): choose ``--size``
with the GPU memory in mind (the training batches live on the GPU).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .data import ArrayDataset, SPLITS, load_dataset
from .errors import ConfigError, DatasetNotFoundError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


def read_class_list(path: str | os.PathLike) -> list[str]:
    """Class ids, one per line (blank lines and ``#`` comments ignored; extra columns after the id are ignored)."""
    ids = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(line.split()[0])
    if not ids:
        raise ConfigError(f"class list {path} holds no class ids")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"class list {path} repeats class ids")
    return ids


def list_images(root: str | os.PathLike, split: str, classes: Sequence[str]) -> list[tuple[Path, int]]:
    """(file, label) pairs of ``<root>/<split>/<class>/*`` for the classes in ``classes``, in list order."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{folder} does not exist: expected an ImageNet-style folder "
                                   f"<root>/{split}/<class id>/<image>")
    items = []
    missing = [c for c in classes if not (folder / c).is_dir()]
    if missing:
        raise DatasetNotFoundError(f"{len(missing)} classes of the list have no folder in {folder}, e.g. "
                                   f"{', '.join(missing[:5])}")
    for label, c in enumerate(classes):
        files = sorted(p for p in (folder / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items += [(p, label) for p in files]
    return items


def load_image(path: Path, size: int, resize: int | None = None) -> np.ndarray:
    """RGB uint8 H×W×3: shorter side resized to ``resize`` (default ``size``), then a centered ``size`` crop."""
    from PIL import Image
    resize = resize or size
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = resize / min(w, h)
        nw, nh = max(size, round(w * s)), max(size, round(h * s))
        im = im.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8)


def convert_image_folder(root: str | os.PathLike, classes: Sequence[str] | str | os.PathLike,
                         out: str | os.PathLike, splits: Iterable[str] = ("train", "val", "test"), *,
                         size: int = 224, resize: int | None = 256, shard_size: int = 10000,
                         limit_per_class: int | None = None, log=print) -> dict[str, int]:
    """Convert ``<root>/<split>/<class>/*`` to ``<out>/<split>-K.npz`` shards; returns images written per split.

    Splits whose folder is absent are skipped (with a message). ``classes`` is a list of ids or a class-list file.
    """
    if not isinstance(classes, (list, tuple)):
        classes = read_class_list(classes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    names = np.array(list(classes))
    counts = {}
    for split in splits:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        if not (Path(root) / split).is_dir():
            log(f"[imagefolder] {split}: no folder {Path(root) / split}, skipped")
            continue
        items = list_images(root, split, classes)
        if limit_per_class is not None:
            seen: dict[int, int] = {}
            kept = []
            for p, lab in items:
                if seen.get(lab, 0) < limit_per_class:
                    kept.append((p, lab))
                    seen[lab] = seen.get(lab, 0) + 1
            items = kept
        for old in out.glob(f"{split}-*.npz"):
            old.unlink()
        for k, start in enumerate(range(0, len(items), shard_size)):
            chunk = items[start:start + shard_size]
            x = np.stack([load_image(p, size, resize) for p, _ in chunk])
            y = np.array([lab for _, lab in chunk], dtype=np.int64)
            np.savez(out / f"{split}-{k}.npz", x=x, y=y, class_names=names)
        counts[split] = len(items)
        log(f"[imagefolder] {split}: {len(items)} images of {len(classes)} classes → {out}/{split}-*.npz")
    return counts


def load_image_folder(folder: str | os.PathLike, split: str = "train", limit: int | None = None) -> ArrayDataset:
    """Load converted shards (``load_dataset("npz", split, folder=folder)``)."""
    return load_dataset("npz", split, folder=folder, limit=limit)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m robustlib.imagefolder", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("root", help="folder holding train/, val/, test/ with one subfolder per class id")
    ap.add_argument("--classes", required=True, help="class list file (one id per line), e.g. ImageNet100_classes.txt")
    ap.add_argument("--out", required=True, help="output folder for the npz shards")
    ap.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--resize", type=int, default=256)
    ap.add_argument("--shard-size", type=int, default=10000)
    ap.add_argument("--limit-per-class", type=int, default=None)
    a = ap.parse_args(argv)
    convert_image_folder(a.root, a.classes, a.out, a.splits, size=a.size, resize=a.resize, shard_size=a.shard_size,
                         limit_per_class=a.limit_per_class)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
