"""CIFAR-10-C-style common corruptions, generated from any image set (Hendrycks & Dietterich, ICLR 2019).

The released CIFAR-10-C (2.9 GB) is not available to this project, so :func:`corruption_suite` regenerates the
benchmark's recipe from the test images we have: every corruption at five severities with the **CIFAR-10
parameters of the authors' generator** (``make_cifar_c.py`` in hendrycks/robustness, read for its constants; the
code here is written anew in torch/numpy + Pillow, without scikit-image, OpenCV, SciPy or ImageMagick).

Families (as in the paper):

* **noise** — Gaussian (σ = .04, .06, .08, .09, .10), shot/Poisson (photons = 500, 250, 100, 75, 50), impulse
  (salt-and-pepper on each colour value, amount = .01, .02, .03, .05, .07);
* **blur** — defocus (anti-aliased disk, radius .3, .4, .5, 1, 1.5, its Gaussian blur .4, .5, .6, .2, .1), glass
  (Gaussian blur σ = .05, .25, .4, .25, .4, then 1 or 2 sweeps of local pixel shuffling, then blur again), motion
  (ImageMagick-style one-sided Gaussian line kernel, radius 6, 6, 6, 8, 9, σ = 1, 1.5, 2, 2, 2.5, random angle in
  ±45°), zoom (the image averaged with its zooms by the factors ``np.arange(1, c, 0.01)``, c = 1.06, 1.11, 1.16,
  1.21, 1.26; float rounding makes numpy's range include its end for the first two, so the factors are
  1.00…1.06 (7 zooms), 1.00…1.11 (12), 1.00…1.15 (16), 1.00…1.20 (21), 1.00…1.25 (26), in steps of .01, and as
  the factor 1.00 reproduces the image, the unzoomed image carries weight 2/(zooms + 1) — all as in the authors'
  code);
* **weather** — fog (a diamond-square plasma fractal, strength .2, .5, .75, 1, 1.5, roughness decay 3, 3, 2.5, 2,
  1.75) and brightness (HSV value + .05, .1, .15, .2, .3). Snow and frost are not generated (frost needs the
  authors' frost photographs; snow needs ImageMagick);
* **digital** — contrast (per-channel mean ± (x − mean)·.75, .5, .4, .3, .15), elastic transform (random affine
  warp plus a smoothed displacement field, CIFAR parameters), pixelate (box down-sampling to 95, 90, 85, 75, 65 %,
  then back), JPEG (quality 80, 65, 58, 50, 40, Pillow's encoder as in the original).

``extra`` holds the benchmark's held-out corruptions that need no extra dependency: speckle noise and Gaussian blur.

Every corruption is a pure function of (images, severity, seed): randomness comes from a generator seeded by
(corruption, severity, seed), so a suite is reproducible bit for bit on CPU, independent of the order it is built
in. Results are uint8 images (truncated like the original's ``np.uint8``), i.e. always inside [0, 1] after
:meth:`~robustlib.data.ArrayDataset.images`. Known differences from the released files: our random streams differ;
glass blur reproduces what the original's pixel "swap" computes (see :func:`glass_blur`); motion blur reimplements
ImageMagick's kernel; the elastic transform samples with bilinear interpolation in torch instead of OpenCV/SciPy.
"""
from __future__ import annotations

import io
import math
from dataclasses import replace
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .data import ArrayDataset
from .errors import ConfigError
from .stats import wilson_interval
from .utils import derive_seed

SEVERITIES = (1, 2, 3, 4, 5)

FAMILIES: dict[str, tuple[str, ...]] = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("fog", "brightness"),
    "digital": ("contrast", "elastic_transform", "pixelate", "jpeg_compression"),
    "extra": ("speckle_noise", "gaussian_blur"),
}
STANDARD_FAMILIES = ("noise", "blur", "weather", "digital")

# CIFAR-10 parameters per severity 1..5 (hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py)
PARAMS: dict[str, list] = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [0.01, 0.02, 0.03, 0.05, 0.07],
    "speckle_noise": [0.06, 0.1, 0.12, 0.16, 0.2],
    "gaussian_blur": [0.4, 0.6, 0.7, 0.8, 1.0],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],          # disk radius, alias blur
    "glass_blur": [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)],  # σ, max shift, passes
    "motion_blur": [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)],                        # radius, σ
    "zoom_blur": [1.06, 1.11, 1.16, 1.21, 1.26],                                        # np.arange(1, c, 0.01)
    "fog": [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)],                       # strength, decay
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "elastic_transform": [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                          (0.1, 0.03, 0.03)],                                            # × image size
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
}

Fn = Callable[[torch.Tensor, object, torch.Generator], torch.Tensor]
CORRUPTIONS: dict[str, Fn] = {}


def _register(name: str):
    def add(fn: Fn) -> Fn:
        CORRUPTIONS[name] = fn
        return fn
    return add


def family_of(name: str) -> str:
    for fam, names in FAMILIES.items():
        if name in names:
            return fam
    raise ConfigError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")


def standard_corruptions() -> tuple[str, ...]:
    """The 13 corruptions of the four benchmark families generated here (CIFAR-10-C's 15 minus snow and frost)."""
    return tuple(n for f in STANDARD_FAMILIES for n in FAMILIES[f])


# ------------------------------------------------------------------------------------------------ helpers


def _pad_index(n: int, p: int, mode: str, device=None) -> torch.Tensor:
    """Indices of a length-n axis padded by p on both sides: ``edge`` (aaa|abcd|ddd), ``symmetric``
    (cba|abcd|dcb: SciPy's 'reflect') or ``reflect101`` (dcb|abcd|cba: OpenCV's default, torch's 'reflect')."""
    i = torch.arange(-p, n + p, device=device)
    if mode == "edge":
        return i.clamp(0, n - 1)
    if n == 1:
        return torch.zeros_like(i)
    if mode == "symmetric":
        period = 2 * n
        i = i % period
        return torch.where(i >= n, period - 1 - i, i)
    if mode == "reflect101":
        period = 2 * (n - 1)
        i = i.abs() % period
        return torch.where(i >= n, period - i, i)
    raise ValueError(mode)


def _pad(x: torch.Tensor, p: int, mode: str) -> torch.Tensor:
    """Pad the last two axes of (…, H, W) by p pixels."""
    if p == 0:
        return x
    h, w = x.shape[-2:]
    x = x.index_select(-2, _pad_index(h, p, mode, x.device))
    return x.index_select(-1, _pad_index(w, p, mode, x.device))


def _gaussian_kernel1d(sigma: float, truncate: float) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return torch.ones(1, dtype=torch.float64)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _separable(x: torch.Tensor, k: torch.Tensor, mode: str) -> torch.Tensor:
    """Filter every channel of (N, C, H, W) with the separable kernel k ⊗ k."""
    r = len(k) // 2
    if r == 0:
        return x
    n, c, h, w = x.shape
    y = _pad(x.reshape(n * c, 1, h, w), r, mode)
    k = k.to(x.dtype)
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    return y.view(n, c, h, w)


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "edge", truncate: float = 4.0) -> torch.Tensor:
    """Gaussian blur of the spatial axes of (N, C, H, W), like ``skimage.filters.gaussian`` (mode 'nearest' =
    ``edge``, truncation at ``truncate``·σ)."""
    return _separable(x, _gaussian_kernel1d(sigma, truncate), mode)


def _uniform(shape, g: torch.Generator, lo: float = 0.0, hi: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(shape, generator=g, dtype=dtype) * (hi - lo) + lo


def _bilinear(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Sample (N, C, H, W) at pixel coordinates rows/cols of shape (N, H', W') (already inside the image)."""
    n, c, h, w = x.shape
    gy = 2 * rows / max(h - 1, 1) - 1
    gx = 2 * cols / max(w - 1, 1) - 1
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _reflect_coord(u: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Fold continuous pixel coordinates into [0, n − 1]: ``reflect101`` (about the edge pixels' centres) or
    ``symmetric`` (about the image border, SciPy's 'reflect')."""
    if n == 1:
        return torch.zeros_like(u)
    if mode == "reflect101":
        period = 2 * (n - 1)
        u = u.abs() % period
        return torch.where(u > n - 1, period - u, u)
    v = (u + 0.5).abs() % (2 * n)
    v = torch.where(v > n, 2 * n - v, v)
    return (v - 0.5).clamp(0, n - 1)


# ---------------------------------------------------------------------------------------------------- noise


@_register("gaussian_noise")
def gaussian_noise(x, c, g):
    return x + c * torch.randn(x.shape, generator=g, dtype=x.dtype)


@_register("shot_noise")
def shot_noise(x, c, g):
    return torch.poisson(x * c, generator=g) / c


@_register("impulse_noise")
def impulse_noise(x, c, g):
    flipped = _uniform(x.shape, g) < c
    salt = _uniform(x.shape, g) < 0.5
    out = x.clone()
    out[flipped & salt] = 1.0
    out[flipped & ~salt] = 0.0
    return out


@_register("speckle_noise")
def speckle_noise(x, c, g):
    return x + x * c * torch.randn(x.shape, generator=g, dtype=x.dtype)


# ----------------------------------------------------------------------------------------------------- blur


@_register("gaussian_blur")
def gaussian_blur(x, c, g):
    return gaussian_filter(x, c)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The anti-aliased disk of defocus blur: a 17×17 indicator of the disk of ``radius``, normalised, then smoothed
    by a 3×3 Gaussian of σ = ``alias_blur``."""
    half = max(8, int(math.ceil(radius)))
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    k = ((xx ** 2 + yy ** 2) <= radius ** 2).double()
    k = k / k.sum()
    size = 3 if radius <= 8 else 5
    s = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    gk = torch.exp(-s ** 2 / (2 * alias_blur ** 2))
    gk = gk / gk.sum()
    return _separable(k[None, None], gk, "reflect101")[0, 0]


@_register("defocus_blur")
def defocus_blur(x, c, g):
    k = disk_kernel(*c)
    nz = torch.nonzero(k.abs() > 0)            # the kernel is exactly zero beyond the blurred disk: crop it
    r = int((nz - k.shape[0] // 2).abs().max())
    k = k[k.shape[0] // 2 - r:k.shape[0] // 2 + r + 1, k.shape[0] // 2 - r:k.shape[0] // 2 + r + 1]
    n, ch, h, w = x.shape
    y = _pad(x.reshape(n * ch, 1, h, w), r, "reflect101")
    return F.conv2d(y, k[None, None].to(x.dtype)).view(n, ch, h, w)


@_register("glass_blur")
def glass_blur(x, c, g):
    """Blur, local pixel shuffling, blur. The original sweeps the pixels from the bottom-right corner and "swaps"
    each with a random neighbour through a NumPy tuple assignment of two pixel *views*, which copies the neighbour
    into the pixel and leaves the neighbour as it was: x[h, w] ← x[h + dy, w + dx]. Its shifts come from NumPy's
    ``randint(-δ, δ)``, which excludes +δ, so with δ = 1 every source lies above or left of its target and has not
    been visited yet: one sweep is a parallel gather from the image before the sweep, which is what this does."""
    sigma, delta, passes = c
    n, ch, h, w = x.shape
    y = torch.floor(gaussian_filter(x, sigma).clamp(0, 1) * 255 + 1e-6) / 255  # the original rounds to uint8 here
    if delta != 1:
        raise ConfigError("glass blur's sweep-as-gather equivalence holds for a maximal shift of 1 pixel")
    hs = torch.arange(delta + 1, h - delta + 1)        # the original's range(H − δ, δ, −1), i.e. rows 2 … H − 1
    ws = torch.arange(delta + 1, w - delta + 1)
    idx = torch.arange(n)[:, None, None]
    for _ in range(passes):
        d = torch.randint(-delta, delta, (2, n, len(hs), len(ws)), generator=g)
        rows = hs[None, :, None] + d[1]
        cols = ws[None, None, :] + d[0]
        vals = y.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2)
        y = y.clone()
        y[:, :, int(hs[0]):int(hs[-1]) + 1, int(ws[0]):int(ws[-1]) + 1] = vals
    return gaussian_filter(y, sigma)


@_register("motion_blur")
def motion_blur(x, c, g):
    """ImageMagick's motion blur: output = Σ_k w_k · x(p + k·(cos θ, sin θ)), k = 0 … 2·radius, one-sided Gaussian
    weights w_k ∝ exp(−k²/2σ²), edge pixels repeated; θ uniform in ±45° per image."""
    radius, sigma = c
    n, ch, h, w = x.shape
    width = 2 * int(math.ceil(radius)) + 1
    k = torch.exp(-torch.arange(width, dtype=torch.float64) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    angle = torch.deg2rad(_uniform((n,), g, -45.0, 45.0))
    out = torch.zeros_like(x)
    idx = torch.arange(n)[:, None, None]
    rows0, cols0 = torch.arange(h), torch.arange(w)
    for i in range(width):
        dx = torch.round(i * torch.cos(angle)).long()
        dy = torch.round(i * torch.sin(angle)).long()
        rows = (rows0[None, :] + dy[:, None]).clamp(0, h - 1)    # (N, H)
        cols = (cols0[None, :] + dx[:, None]).clamp(0, w - 1)    # (N, W)
        shifted = x.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        out += k[i] * shifted
    return torch.floor(out.clamp(0, 1) * 255 + 0.5) / 255  # ImageMagick writes 8-bit PNG


def _clipped_zoom(x: torch.Tensor, z: float) -> torch.Tensor:
    """Zoom into the centre by factor z (crop ⌈H/z⌉ pixels, bilinear up-sampling with corners aligned, like
    ``scipy.ndimage.zoom(order=1)``), keeping the size."""
    h = x.shape[-1]
    crop = int(math.ceil(h / z))
    top = (h - crop) // 2
    size = int(round(crop * z))
    y = F.interpolate(x[..., top:top + crop, top:top + crop], size=(size, size), mode="bilinear",
                      align_corners=True)
    trim = (size - h) // 2
    return y[..., trim:trim + h, trim:trim + h]


@_register("zoom_blur")
def zoom_blur(x, c, g):
    factors = np.arange(1, c, 0.01)
    out = torch.zeros_like(x)
    for z in factors:
        out += _clipped_zoom(x, float(z))
    return (x + out) / (len(factors) + 1)


# -------------------------------------------------------------------------------------------------- weather


def plasma_fractal(n: int, size: int, decay: float, g: torch.Generator) -> torch.Tensor:
    """``n`` diamond-square height maps of side ``size`` (a power of two) on a torus, scaled to [0, 1].

    Each level sets the centres of the squares (mean of 4 corners) and then the edge midpoints (mean of 4 diamond
    neighbours) and adds uniform noise of amplitude wibble² (wibble = 100, divided by ``decay`` per level)."""
    if size & (size - 1):
        raise ConfigError(f"plasma fractal size must be a power of two, got {size}")
    m = torch.zeros(n, size, size, dtype=torch.float64)
    step, wibble = size, 100.0

    def noisy_mean(total):
        return total / 4 + wibble * _uniform(total.shape, g, -wibble, wibble, torch.float64)

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        acc = corners + corners.roll(-1, dims=1)
        acc = acc + acc.roll(-1, dims=2)
        m[:, half::step, half::step] = noisy_mean(acc)
        centres = m[:, half::step, half::step]
        corners = m[:, 0::step, 0::step]
        # midpoints of the top edges: the two corners beside them and the centres above and below
        m[:, 0::step, half::step] = noisy_mean(centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2))
        # midpoints of the left edges: the two corners above and below and the centres left and right
        m[:, half::step, 0::step] = noisy_mean(centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1))
        step //= 2
        wibble /= decay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return m / m.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)


@_register("fog")
def fog(x, c, g):
    strength, decay = c
    n, ch, h, w = x.shape
    size = 32                      # the original's map size for CIFAR
    while size < max(h, w):
        size *= 2
    frac = plasma_fractal(n, size, decay, g)[:, :h, :w]
    top = x.amax(dim=(1, 2, 3), keepdim=True)
    y = x + strength * frac[:, None]
    return y * top / (top + strength)


@_register("brightness")
def brightness(x, c, g):
    """HSV value + c: with hue and saturation fixed, RGB scales with V, so RGB·V'/V (black becomes grey V')."""
    v = x.amax(dim=1, keepdim=True)
    v2 = (v + c).clamp(0, 1)
    return torch.where(v > 0, x * v2 / v.clamp_min(1e-12), v2.expand_as(x))


# -------------------------------------------------------------------------------------------------- digital


@_register("contrast")
def contrast(x, c, g):
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * c + mean


def _affine_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The 2×3 affine maps A with A·[src; 1] = dst for batches of three point pairs (N, 3, 2)."""
    ones = torch.ones(*src.shape[:2], 1, dtype=src.dtype)
    a = torch.cat([src, ones], dim=2)                      # (N, 3, 3)
    return torch.linalg.solve(a, dst).transpose(1, 2)      # (N, 2, 3)


@_register("elastic_transform")
def elastic_transform(x, c, g):
    """A random affine warp (three control points moved by up to c₂·size, reflect-101 border), then a displacement
    field of uniform noise smoothed by a Gaussian of σ = c₁·size (truncated at 3σ) and scaled by c₀·size."""
    n, ch, h, w = x.shape
    alpha, sigma, shift = (v * h for v in c)
    centre, sq = h // 2, h // 3
    src = torch.tensor([[centre + sq, centre + sq], [centre + sq, centre - sq], [centre - sq, centre - sq]],
                       dtype=torch.float64).expand(n, 3, 2)              # (x, y) points
    dst = src + _uniform((n, 3, 2), g, -shift, shift, torch.float64)
    m = _affine_from_points(src, dst)                                     # src → dst
    inv = torch.linalg.inv(torch.cat([m, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64).expand(n, 1, 3)], 1))
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pts = torch.stack([xx, yy, torch.ones_like(xx)], dim=-1).view(1, h * w, 3)
    srcpts = pts @ inv[:, :2, :].transpose(1, 2)                          # (N, HW, 2) source (x, y) of each pixel
    cols = _reflect_coord(srcpts[..., 0].view(n, h, w), w, "reflect101")
    rows = _reflect_coord(srcpts[..., 1].view(n, h, w), h, "reflect101")
    warped = _bilinear(x, rows, cols)
    noise = _uniform((n, 2, h, w), g, -1.0, 1.0)
    d = gaussian_filter(noise, sigma, mode="symmetric", truncate=3.0) * alpha if alpha > 0 else torch.zeros_like(noise)
    rows = _reflect_coord(yy[None] + d[:, 1], h, "symmetric")
    cols = _reflect_coord(xx[None] + d[:, 0], w, "symmetric")
    return _bilinear(warped, rows, cols)


def _per_image_pil(x: torch.Tensor, op) -> torch.Tensor:
    from PIL import Image
    arr = (torch.floor(x.clamp(0, 1) * 255 + 1e-6)).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    out = []
    for a in arr:
        img = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
        res = np.asarray(op(img), dtype=np.uint8)
        out.append(res[..., None] if res.ndim == 2 else res)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(x.dtype) / 255


@_register("pixelate")
def pixelate(x, c, g):
    from PIL import Image
    h, w = x.shape[-2:]
    return _per_image_pil(x, lambda im: im.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX))


@_register("jpeg_compression")
def jpeg_compression(x, c, g):
    from PIL import Image

    def op(im):
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=c)
        buf.seek(0)
        return Image.open(buf).convert(im.mode)
    return _per_image_pil(x, op)


# ------------------------------------------------------------------------------------------------ interface


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats → uint8 by truncation (the original's ``np.uint8``); the offset of 1/1000 grey level keeps
    values that float rounding puts just below k (e.g. an average of many k/255) at k."""
    return torch.floor(x.clamp(0, 1) * 255 + 1e-3).to(torch.uint8)


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Corrupt uint8 images (N, C, H, W) with corruption ``name`` at ``severity`` (1–5); returns uint8 images.

    Deterministic: the same images, corruption, severity and seed give the same bytes."""
    if name not in CORRUPTIONS:
        raise ConfigError(f"unknown corruption {name!r}; valid: {', '.join(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ConfigError(f"severity must be one of {SEVERITIES}, got {severity}")
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ConfigError(f"corrupt() takes uint8 N×C×H×W images, got {images.dtype} {tuple(images.shape)}")
    g = torch.Generator().manual_seed(derive_seed("corruption", name, severity, seed))
    x = images.detach().cpu().float() / 255
    return _to_uint8(CORRUPTIONS[name](x, PARAMS[name][severity - 1], g))


def corrupt_dataset(data: ArrayDataset, name: str, severity: int, seed: int = 0) -> ArrayDataset:
    """``data`` with every image corrupted (labels kept); the split is named ``<corruption>-<severity>``."""
    return replace(data, x=corrupt(data.x, name, severity, seed), split=f"{name}-{severity}",
                   source=f"{data.source} + {name} severity {severity} (seed {seed})")


def corruption_suite(data: ArrayDataset, corruptions: Sequence[str] | None = None,
                     severities: Sequence[int] = SEVERITIES, seed: int = 0) -> dict[tuple[str, int], ArrayDataset]:
    """{(corruption, severity): corrupted copy of ``data``} for every pair (default: the 13 standard ones × 5)."""
    names = tuple(corruptions) if corruptions is not None else standard_corruptions()
    return {(c, s): corrupt_dataset(data, c, s, seed) for c in names for s in severities}


def evaluate_corruptions(model: torch.nn.Module, suite: Mapping[tuple[str, int], ArrayDataset], *,
                         batch_size: int = 1000, device: str | torch.device = "auto") -> pd.DataFrame:
    """Clean accuracy of ``model`` on every set of a suite (one :func:`robustlib.evaluation.evaluate` call over all
    of them): a row per (corruption, family, severity) with accuracy, 95 % Wilson interval and n."""
    from .evaluation import evaluate
    keys = list(suite)
    if not keys:
        raise ConfigError("the corruption suite is empty")
    sizes = [len(suite[k]) for k in keys]
    first = suite[keys[0]]
    big = replace(first, x=torch.cat([suite[k].x for k in keys]), y=torch.cat([suite[k].y for k in keys]),
                  split="corruptions")
    flags = evaluate(model, big, batch_size=batch_size, device=device, progress=False).flags["clean"].to_numpy()
    rows, start = [], 0
    for (name, sev), size in zip(keys, sizes):
        k = int(flags[start:start + size].sum())
        lo, hi = wilson_interval(k, size)
        rows.append({"corruption": name, "family": family_of(name), "severity": sev, "accuracy": 100 * k / size,
                     "ci_low": lo, "ci_high": hi, "n": size})
        start += size
    return pd.DataFrame(rows)


__all__ = ["SEVERITIES", "FAMILIES", "STANDARD_FAMILIES", "PARAMS", "CORRUPTIONS", "family_of",
           "standard_corruptions", "corrupt", "corrupt_dataset", "corruption_suite", "evaluate_corruptions",
           "gaussian_filter", "disk_kernel", "plasma_fractal"]
