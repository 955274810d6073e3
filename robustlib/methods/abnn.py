"""ABNN: adaptive batch-normalisation networks (Lo & Patel, AVSS 2024) — robustness without adversarial training.

A frozen, pre-trained **substitute** network runs on the same input as the **target** network being trained. After the
target's stem and after each of its four stages (``placement="stages"``, as in the authors' code) — or at every
BatchNorm of the target (``placement="every_bn"``, an ablation) — an :class:`AdaptiveBN` module re-scales and shifts the
target's normalised features with quantities computed from the substitute's features at the same stage. In the form of
the authors' evaluation code (shaoyuanlo/GARD_eval, ``models/resnext_onthefly.py``; abnn.md §3) [code]::

    y          = flatten(z_s)                                   substitute feature, B × D_s
    [γ(y), β(y)] = W·y + b                                      equalised-LR linear map D_s → 2·C_t
    out        = γ(y) ⊙ [ σ(y) · BN_t(z_t) + μ(y) ] + β(y)      channel-wise

* ``W`` is stored as N(0, 1) and multiplied by √(2 / D_s) at every forward (StyleGAN's equalised learning rate); the
  bias starts at 1 for the γ half and at 0 for the β half [code].
* ``BN_t`` is the target's own BatchNorm with its learnable affine (batch statistics in training, running statistics
  in evaluation) [code].
* ``μ(y)``, ``σ(y)`` are ``torch.mean``/``torch.std`` (unbiased) of the substitute feature. ``stats="batch_global"``
  (the code): two scalars over **the whole flattened batch**, computed from the current batch even at test time, so
  a prediction depends on the other images of its batch. ``stats="per_sample"``: one pair per sample (batch
  independent). A batch-global model evaluated at batch size 1 equals the same weights run with ``per_sample``
  statistics, which is how the chapter attacks "at batch size 1" without a loop over images. A batch-global model
  declares ``batch_dependent = True`` and gives that equivalent as :meth:`ABNNNet.batch_size_one`, so that
  :func:`robustlib.evaluation.evaluate` scores each attack in the batch it was crafted in and adds batch-size-1
  columns, and AutoAttack attacks the batch-size-1 function (see :class:`robustlib.attacks.AutoAttack`).
* ``detach_stats=True`` treats μ, σ as constants in the backward pass (a BPDA-style attack on the batch coupling);
  ``detach_substitute=True`` stops every gradient into the substitute (an attack through the target only). Both
  change gradients only, never a forward value.

Training (:class:`ABNN`) is cross-entropy on clean images only. The substitute is frozen: its parameters do not
require gradients (so the optimiser never sees them) and :meth:`ABNNNet.train` keeps it in eval mode (running BN
statistics never change) [paper: frozen; BN mode unstated, eval chosen]. Per training sample the cost meter counts a
target forward and backward and a substitute forward: 3N (:meth:`ABNNNet.cost_networks`), as the method states
(:meth:`ABNN.derived_passes`) [seed].

The substitute: the paper's is "a public model trained on large-scale datasets (e.g., ImageNet)" [seed]; the
ImageNet ResNet layout it takes, and the loader of local torchvision checkpoints, live in
:mod:`robustlib.models.imagenet` (this project pre-trains that layout on the 32×32 Tiny-ImageNet subset, 200 classes,
a dataset different from CIFAR-10, with the one Trainer: see the ABNN chapter). ``substitute_id`` names the
substitute's weights in :class:`ABNNNet`'s ``repr``, so two ABNN runs that differ only in their substitute's weights
get different run fingerprints.
"""
from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ConfigError
from ..models.imagenet import load_torchvision_weights
from ..models.registry import MODELS, register_model
from .base import Method, accuracy_log, register_method

STATS = ("batch_global", "per_sample")
PLACEMENTS = ("stages", "every_bn")


# ----------------------------------------------------------------------------------------------- the module


class EqualLinear(nn.Module):
    """A linear map with an equalised learning rate: y = (√(gain² / fan_in) · W) x + b, W ~ N(0, 1) as stored."""

    def __init__(self, in_features: int, out_features: int, bias_init: float | torch.Tensor = 0.0,
                 gain: float = math.sqrt(2.0)):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.randn(out_features, in_features))
        self.bias = nn.Parameter(torch.as_tensor(bias_init, dtype=torch.float32).expand(out_features).clone())
        self.scale = gain / math.sqrt(in_features)

    def forward(self, x):
        return F.linear(x, self.weight * self.scale, self.bias)

    def extra_repr(self):
        return f"{self.in_features} → {self.out_features}, scale={self.scale:.3g}"


def _batchnorm(num_features: int, dims: int) -> nn.Module:
    return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[dims](num_features)


class AdaptiveBN(nn.Module):
    """out = γ(z_s) ⊙ [σ(z_s)·BN_t(z_t) + μ(z_s)] + β(z_s) (see the module docstring).

    ``num_features`` = C_t (target channels); ``style_dim`` = D_s (flattened substitute feature, after the optional
    ``pool``: an adaptive average pool of the substitute feature to that spatial size, a memory-saving deviation for
    large inputs); ``bn`` = an existing BatchNorm to use as BN_t (placement at every BN), else a new one with ``dims``
    spatial dimensions (2 for images, 3 for videos).
    """

    def __init__(self, num_features: int, style_dim: int, *, stats: str = "batch_global", detach_stats: bool = False,
                 bn: nn.Module | None = None, dims: int = 2, pool: Sequence[int] | None = None):
        super().__init__()
        if stats not in STATS:
            raise ConfigError(f"unknown ABNN statistics {stats!r}; valid: {', '.join(STATS)}")
        self.num_features, self.style_dim = num_features, style_dim
        self.bn = bn if bn is not None else _batchnorm(num_features, dims)
        bias = torch.cat([torch.ones(num_features), torch.zeros(num_features)])
        self.style = EqualLinear(style_dim, 2 * num_features, bias_init=bias)
        self.stats, self.detach_stats = stats, detach_stats
        self.pool = tuple(pool) if pool is not None else None

    def style_input(self, z_s: torch.Tensor) -> torch.Tensor:
        """y: the (optionally pooled) substitute feature, flattened per sample."""
        if self.pool is not None:
            pool = {4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}[z_s.ndim]
            z_s = pool(z_s, self.pool)
        return z_s.flatten(1)

    def statistics(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ(y), σ(y) in float32: scalars (``batch_global``) or one per sample, shape (B,) (``per_sample``)."""
        y = y.float()
        if self.stats == "batch_global":
            mu, sigma = y.mean(), y.std()
        else:
            mu, sigma = y.mean(1), y.std(1)
        if self.detach_stats:
            mu, sigma = mu.detach(), sigma.detach()
        return mu, sigma

    def forward(self, z_t: torch.Tensor, z_s: torch.Tensor) -> torch.Tensor:
        y = self.style_input(z_s)
        gamma, beta = self.style(y).chunk(2, dim=1)
        mu, sigma = self.statistics(y)
        shape = (z_t.shape[0], self.num_features) + (1,) * (z_t.ndim - 2)
        if mu.ndim:  # per sample
            mu, sigma = (t.view(-1, *([1] * (z_t.ndim - 1))) for t in (mu, sigma))
        m = sigma * self.bn(z_t) + mu
        return gamma.view(shape) * m + beta.view(shape)

    @property
    def batch_dependent(self) -> bool:
        """Batch-global μ/σ make an image's output depend on its batch-mates (see robustlib.evaluation)."""
        return self.stats == "batch_global"

    def extra_repr(self):
        pool = f", pool={self.pool}" if self.pool else ""
        return (f"C_t={self.num_features}, D_s={self.style_dim}, stats={self.stats}, "
                f"detach_stats={self.detach_stats}{pool}")


class SubstituteFeatures(nn.Module):
    """The frozen substitute, called as a module so the cost meter sees its forward: returns its stage outputs."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x) -> list[torch.Tensor]:
        return list(self.net.stage_outputs(x))


class _FeatureStore:
    """The substitute's features of the current forward, shared by the adaptive BNs placed at every BN."""

    feats: list[torch.Tensor] | None = None


class _AdaptiveSlot(nn.Module):
    """Stands where a target BatchNorm was (``placement="every_bn"``): AdaptiveBN fed the substitute's feature of the
    same stage."""

    def __init__(self, abn: AdaptiveBN, stage: int, store: _FeatureStore):
        super().__init__()
        self.abn, self.stage, self._store = abn, stage, store

    def forward(self, z):
        if self._store.feats is None:
            raise RuntimeError("an adaptive BN ran outside ABNNNet.forward (the substitute's features are missing)")
        return self.abn(z, self._store.feats[self.stage])

    def extra_repr(self):
        return f"stage={self.stage}"


def stage_of(name: str) -> int:
    """The stage a target module belongs to: ``layer<k>…`` → k, anything before the stages (stem) → 0."""
    m = re.match(r"layer(\d)", name)
    return int(m.group(1)) if m else 0


def freeze(net: nn.Module) -> nn.Module:
    """Eval mode and no gradients for every parameter (a frozen substitute)."""
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class ABNNNet(nn.Module):
    """Target + frozen substitute with adaptive BNs.

    ``target`` must provide ``forward(x, stage_fn=None)`` and ``stage_channels`` (robustlib's ResNets and video
    ResNets do); ``substitute`` must provide ``stage_outputs(x)`` (five maps: stem and four stages). ``input_shape``
    (C, H, W) or (C, T, H, W) is used once, to size the style maps from the substitute's feature dimensions.
    ``substitute_id`` names the substitute's weights (e.g. the fingerprint of its pre-training run); it appears in the
    ``repr`` and hence in the run fingerprint, so ABNN runs with differently pre-trained substitutes never share a
    checkpoint folder.
    """

    def __init__(self, target: nn.Module, substitute: nn.Module, *, placement: str = "stages",
                 stats: str = "batch_global", detach_stats: bool = False, input_shape: Sequence[int] = (3, 32, 32),
                 style_pool: Sequence[int] | None = None, substitute_id: str | None = None):
        super().__init__()
        if placement not in PLACEMENTS:
            raise ConfigError(f"unknown ABNN placement {placement!r}; valid: {', '.join(PLACEMENTS)}")
        self.placement = placement
        self.substitute_id = substitute_id
        self.target = target
        self.substitute = SubstituteFeatures(freeze(substitute))
        self.detach_substitute = False
        dims = len(input_shape) - 1
        with torch.no_grad():
            feats = self.substitute(torch.zeros(1, *input_shape))
        self.style_dims = [self._style_dim(f, style_pool) for f in feats]
        kw = dict(stats=stats, detach_stats=detach_stats, pool=style_pool)
        self._store = _FeatureStore()
        if placement == "stages":
            self.adaptive = nn.ModuleList(AdaptiveBN(c, d, dims=dims, **kw)
                                          for c, d in zip(target.stage_channels, self.style_dims))
        else:
            from ..models.norm import replace_batchnorm
            stages = {id(m): stage_of(n) for n, m in target.named_modules()}

            def factory(bn):
                k = stages[id(bn)]
                return _AdaptiveSlot(AdaptiveBN(bn.num_features, self.style_dims[k], bn=bn, **kw), k, self._store)

            self.num_adaptive = replace_batchnorm(target, factory)

    def extra_repr(self):
        return f"placement={self.placement}" + (f", substitute={self.substitute_id}" if self.substitute_id else "")

    @staticmethod
    def _style_dim(f: torch.Tensor, pool) -> int:
        if pool is None:
            return f[0].numel()
        return f.shape[1] * math.prod(pool)

    # -------------------------------------------------------------------------------------------- forward

    def features(self, x) -> list[torch.Tensor]:
        feats = self.substitute(x)
        return [f.detach() for f in feats] if self.detach_substitute else feats

    def forward(self, x):
        feats = self.features(x)
        if self.placement == "stages":
            return self.target(x, stage_fn=lambda k, z: self.adaptive[k](z, feats[k]))
        self._store.feats = feats
        try:
            return self.target(x)
        finally:
            self._store.feats = None

    def train(self, mode: bool = True):
        super().train(mode)
        self.substitute.eval()   # the substitute's BN statistics never change
        return self

    def cost_networks(self) -> dict[str, nn.Module]:
        """Target and substitute counted separately by the cost meter: 2N + 1N = 3N per training sample."""
        return {"target": self.target, "substitute": self.substitute}

    # -------------------------------------------------------------------------------------------- options

    def adaptive_modules(self) -> list[AdaptiveBN]:
        return [m for m in self.modules() if isinstance(m, AdaptiveBN)]

    @contextlib.contextmanager
    def options(self, *, stats: str | None = None, detach_stats: bool | None = None,
                detach_substitute: bool | None = None):
        """Temporarily change how μ/σ are computed (``stats``), whether they are constants in the backward pass
        (``detach_stats``), or whether gradients reach the substitute (``detach_substitute``)."""
        if stats is not None and stats not in STATS:
            raise ConfigError(f"unknown ABNN statistics {stats!r}; valid: {', '.join(STATS)}")
        mods = self.adaptive_modules()
        saved = [(m.stats, m.detach_stats) for m in mods], self.detach_substitute
        try:
            for m in mods:
                m.stats = stats if stats is not None else m.stats
                m.detach_stats = detach_stats if detach_stats is not None else m.detach_stats
            if detach_substitute is not None:
                self.detach_substitute = detach_substitute
            yield self
        finally:
            for m, (s, d) in zip(mods, saved[0]):
                m.stats, m.detach_stats = s, d
            self.detach_substitute = saved[1]

    @property
    def stats(self) -> str:
        return self.adaptive_modules()[0].stats

    @property
    def batch_dependent(self) -> bool:
        """True when any adaptive BN uses batch-global μ/σ (eval-mode predictions then depend on the batch)."""
        return any(m.batch_dependent for m in self.adaptive_modules())

    def batch_size_one(self) -> nn.Module:
        """The batch-size-1 function as a batched, batch-independent module: these weights with per-sample μ/σ
        (equal to running each image alone with batch-global μ/σ)."""
        return ABNNView(self, stats="per_sample") if self.batch_dependent else self

    def style_parameters(self) -> int:
        return sum(m.style.weight.numel() + m.style.bias.numel() for m in self.adaptive_modules())


class ABNNView(nn.Module):
    """``model`` run with fixed :meth:`ABNNNet.options` (e.g. μ/σ as constants, or per-sample statistics), so that an
    unchanged attack or evaluator sees the variant. Shares the weights of ``model``."""

    def __init__(self, model: ABNNNet, **options):
        super().__init__()
        self.model = model
        self.opts = options

    def forward(self, x):
        with self.model.options(**self.opts):
            return self.model(x)

    def train(self, mode: bool = True):
        self.model.train(mode)
        self.training = mode
        return self

    @property
    def batch_dependent(self) -> bool:
        """Whether the view, with its options, depends on the batch (per-sample statistics: no)."""
        stats = self.opts.get("stats")
        return self.model.batch_dependent if stats is None else stats == "batch_global"

    def batch_size_one(self) -> nn.Module:
        """This view with per-sample μ/σ (its batch-size-1 function)."""
        return ABNNView(self.model, **{**self.opts, "stats": "per_sample"}) if self.batch_dependent else self

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.opts.items())


# ----------------------------------------------------------------------------------------- the method


@register_method("abnn")
class ABNN(Method):
    """ABNN training: cross-entropy on clean images only; the substitute stays frozen (checked at setup). 3N/sample."""

    name = "ABNN"

    def derived_passes(self) -> float:
        """Per training sample, on clean images only: the target's forward and backward, 2N, plus the frozen
        substitute's forward, 1N (its outputs feed the adaptive BNs; no gradient is needed for its frozen weights, so
        it has no backward pass) = the slides' 2N + N = 3N. The cost meter counts the two networks separately
        (:meth:`ABNNNet.cost_networks`)."""
        return 3.0

    def setup(self, trainer) -> None:
        model = trainer.model
        if not isinstance(model, ABNNNet):
            raise ConfigError(f"the ABNN method trains an ABNNNet (target + substitute), got {type(model).__name__}")
        sub = {id(p) for p in model.substitute.parameters()}
        trained = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
        if sub & trained:
            raise ConfigError("the ABNN substitute must be frozen, but the optimiser holds some of its parameters")

    def loss(self, model, x, y, step):
        logits = model(x)
        return F.cross_entropy(logits, y), {"acc": accuracy_log(logits, y)}


# ---------------------------------------------------------------------------------------- by model names


@register_model("abnn")
def abnn_net(target: str | nn.Module = "resnet18", substitute: str | nn.Module = "tv_resnet18", *,
             num_classes: int = 10, target_kw: dict | None = None, substitute_kw: dict | None = None,
             substitute_weights: str | Path | None = None, **kw) -> ABNNNet:
    """Build an :class:`ABNNNet` from model names (or modules). ``substitute_weights``: a local torchvision
    checkpoint for the substitute (ImageNet weights for users who have them)."""
    if isinstance(target, str):
        target = MODELS.build(target, num_classes=num_classes, **(target_kw or {}))
    if isinstance(substitute, str):
        substitute = MODELS.build(substitute, **(substitute_kw or {}))
    if substitute_weights is not None:
        load_torchvision_weights(substitute, substitute_weights)
    return ABNNNet(target, substitute, **kw)
