"""ROA, the rectangular occlusion attack (Wu, Tong & Vorobeychik, ICLR 2020; the video variant of Lo & Patel).

A physically realisable attack: a rectangle covering ``area`` of the image (10 % in the ABNN slides [seed]) is pasted
onto the input, and only its pixels are then optimised, without an ℓ∞ bound (ε = 255/255):

1. **Location.** ``location="search"`` (Wu et al.): every position of a strided grid is tried with a neutral grey
   rectangle and the one with the highest loss is kept, per image. ``location="random"`` (Lo & Patel's video code,
   which skips the search "to save computations"): the top-left corner is drawn uniformly from the strided grid, per
   image (and per frame with ``per_frame=True``).
2. **Patch.** The rectangle starts grey (0.5) or uniform noise (``init``), then ``steps`` (t_max = 5) signed steps
   x ← clip₀¹(x + α·sign(∇ₓ CE)·M) change the pixels inside the mask M only.

Images are N×C×H×W; videos N×C×T×H×W (the rectangle covers the same place in every frame, unless ``per_frame``),
or N×C×(T·H)×W with T frames stacked along the height when ``frames=T`` is given (robustlib's 4-D data pipeline).
The side of the square patch is round(√(area·H·W)): 10 × 10 on 32 × 32 (9.8 %), 35 × 35 on 112 × 112 (9.8 %). The
default grid stride is ≈ side / 5 (2 px on CIFAR-10, 7 px on 112-px frames: 12 × 12 = 144 positions).

α defaults to 70/255, OUDefend's setting for its 5-step ROA [paper: OUDefend]; the 2020 multi-BN paper used 1/255.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .core import Attack, register_attack

LOCATIONS = ("search", "random")
INITS = ("gray", "uniform")


@register_attack("roa")
class ROA(Attack):
    name = "roa"

    def __init__(self, area: float = 0.10, *, size: tuple[int, int] | None = None, steps: int = 5,
                 alpha: float = 70 / 255, location: str = "search", stride: int | None = None,
                 init: str = "gray", frames: int | None = None, per_frame: bool = False, seed: int = 0,
                 bn_mode: str = "eval", name: str | None = None):
        super().__init__(1.0, "linf", bn_mode)
        if location not in LOCATIONS:
            raise ConfigError(f"unknown ROA location mode {location!r}; valid: {', '.join(LOCATIONS)}")
        if init not in INITS:
            raise ConfigError(f"unknown ROA init {init!r}; valid: {', '.join(INITS)}")
        if not 0 < area < 1 and size is None:
            raise ConfigError(f"ROA area must be in (0, 1), got {area}")
        if steps < 0:
            raise ConfigError(f"steps must be ≥ 0, got {steps}")
        self.area, self.size, self.steps, self.alpha = area, size, steps, float(alpha)
        self.location, self.stride, self.init = location, stride, init
        self.frames, self.per_frame, self.seed = frames, per_frame, seed
        if name is not None:
            self.name = name
        self._last_mask: torch.Tensor | None = None

    @property
    def last_mask(self) -> torch.Tensor | None:
        """The boolean patch mask of the last :meth:`perturb` call (N×1×H×W, or the clips' layout)."""
        return self._last_mask

    # -------------------------------------------------------------------------------------------- geometry

    def patch_size(self, h: int, w: int) -> tuple[int, int]:
        if self.size is not None:
            return tuple(self.size)  # type: ignore[return-value]
        side = max(1, round(math.sqrt(self.area * h * w)))
        return min(side, h), min(side, w)

    def grid(self, h: int, w: int) -> tuple[list[int], list[int]]:
        """Top-left corners (rows, columns) of the strided grid, both ends included."""
        ph, pw = self.patch_size(h, w)
        stride = self.stride or max(1, round(min(ph, pw) / 5))
        rows = sorted(set(range(0, h - ph + 1, stride)) | {h - ph})
        cols = sorted(set(range(0, w - pw + 1, stride)) | {w - pw})
        return rows, cols

    def _as_video(self, x: torch.Tensor) -> torch.Tensor:
        """A view of ``x`` as N×C×T×H×W (T = 1 for images)."""
        if x.ndim == 5:
            return x
        if x.ndim != 4:
            raise ConfigError(f"ROA needs N×C×H×W images or N×C×T×H×W clips, got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        t = self.frames or 1
        if h % t:
            raise ConfigError(f"height {h} is not a multiple of frames={t}")
        return x.reshape(n, c, t, h // t, w)

    def _mask(self, shape5, rows: torch.Tensor, cols: torch.Tensor, device) -> torch.Tensor:
        """Boolean mask N×1×T×H×W of rectangles at (rows, cols), each of shape (N,) or (N, T)."""
        n, _, t, h, w = shape5
        ph, pw = self.patch_size(h, w)
        if rows.ndim == 1:
            rows, cols = rows[:, None].expand(n, t), cols[:, None].expand(n, t)
        ar_h, ar_w = torch.arange(h, device=device), torch.arange(w, device=device)
        in_r = (ar_h >= rows[..., None]) & (ar_h < rows[..., None] + ph)          # N×T×H
        in_c = (ar_w >= cols[..., None]) & (ar_w < cols[..., None] + pw)          # N×T×W
        return (in_r[..., :, None] & in_c[..., None, :])[:, None]                 # N×1×T×H×W

    # ---------------------------------------------------------------------------------------------- attack

    def _fill(self, x5: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.init == "gray":
            return torch.full_like(x5, 0.5)
        return torch.rand(x5.shape, generator=generator, device=x5.device, dtype=x5.dtype)

    def _loss(self, model, x5: torch.Tensor, y: torch.Tensor, shape) -> torch.Tensor:
        return F.cross_entropy(model(x5.reshape(shape)).float(), y, reduction="none")

    def locate(self, model, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None):
        """Per image, the patch's top-left corner: (rows, cols), each (N,) or (N, T) with ``per_frame``."""
        x5 = self._as_video(x)
        n, _, t, h, w = x5.shape
        rows, cols = self.grid(h, w)
        g = generator or torch.Generator(device=x.device).manual_seed(self.seed)
        if self.location == "random":
            shape = (n, t) if self.per_frame else (n,)
            ri = torch.randint(0, len(rows), shape, generator=g, device=x.device)
            ci = torch.randint(0, len(cols), shape, generator=g, device=x.device)
            return torch.tensor(rows, device=x.device)[ri], torch.tensor(cols, device=x.device)[ci]
        fill = self._fill(x5, g)
        best = torch.full((n,), -float("inf"), device=x.device)
        best_r = torch.zeros(n, dtype=torch.long, device=x.device)
        best_c = torch.zeros(n, dtype=torch.long, device=x.device)
        with torch.no_grad():
            for r in rows:
                for c in cols:
                    rr = torch.full((n,), r, device=x.device)
                    cc = torch.full((n,), c, device=x.device)
                    m = self._mask(x5.shape, rr, cc, x.device)
                    loss = self._loss(model, torch.where(m, fill, x5), y, x.shape)
                    better = loss > best
                    best = torch.where(better, loss, best)
                    best_r = torch.where(better, rr, best_r)
                    best_c = torch.where(better, cc, best_c)
        return best_r, best_c

    def _perturb(self, model, x, y):
        g = torch.Generator(device=x.device).manual_seed(self.seed)
        x5 = self._as_video(x)
        rows, cols = self.locate(model, x, y, g)
        mask = self._mask(x5.shape, rows, cols, x.device)
        x_adv = torch.where(mask, self._fill(x5, g), x5)
        step = self.alpha * mask.to(x.dtype)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            loss = self._loss(model, x_adv, y, x.shape).sum()
            grad, = torch.autograd.grad(loss, x_adv)
            x_adv = (x_adv.detach() + step * grad.sign()).clamp(0, 1)
        self._last_mask = mask.reshape(x.shape[0], 1, *x.shape[2:]).detach()
        return x_adv.detach().reshape(x.shape)
