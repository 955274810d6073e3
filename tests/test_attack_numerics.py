"""Regression tests that restate the official evaluators' numerics on a fixed tiny model and seed.

Each test writes the official update as a plain loop, from the facts in shared/papers/nuat.md (§3: NuAT's
multi-step PGD evaluator ``MSPGD``; §4.1: ``GAMA/GAMA_PGD.py``), and asserts that robustlib's attack returns the same
adversarial images and the same per-image flags. The official scripts draw their random starts from numpy; only
the distribution is a fact of the paper's code, so the loops below draw theirs from torch's global generator with the
same calls robustlib makes (same seed ⇒ same start), and everything after the start is compared.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from robustlib.attacks import GAMAPGD, PGD

SEED = 3


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: a second intra-op thread only adds synchronisation (20× slower on a busy 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _images(n: int, seed: int) -> torch.Tensor:
    """Random 3×8×8 images with about 14 % of the pixels saturated at 0 or 1 (so the [0, 1] clip matters)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 8, 8, generator=g) * 1.4 - 0.2).clamp(0, 1)


@pytest.fixture(scope="module")
def tiny():
    """A fixed random conv net with eval-mode BatchNorm (running statistics of 64 images), frozen parameters,
    16 images, and labels that are the clean predictions except every fourth (so some images are misclassified
    clean)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6, momentum=None), nn.ReLU(),
                          nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 10))
    model.train()
    with torch.no_grad():
        model(_images(64, 7))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = _images(16, 1)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[::4] = (y[::4] + 1) % 10
    return model, x, y


def _correct(model, x, y):
    with torch.no_grad():
        return model(x).argmax(1) == y


# ------------------------------------------------------------------------------------------------- GAMA-PGD (§4.1)

def gama_reference(model, x, y, eps, steps=100, w0=50.0, lin=25, sched=(60, 85)):
    """GAMA-PGD as nuat.md §4.1 states it: Bernoulli start x₀ = x + ε·s (a vertex of the ε-ball, not clipped);
    loss = batch mean of the softmax margin max_{j≠y} p_j − p_y, plus w·(batch mean of ‖p(x₀) − p(x_t)‖²) while
    t ≤ lin, w starting at w0 and falling by w0/lin per step (0 at t = lin); signed steps of 2ε, divided by 10 at
    the start of steps 60 and 85; after each step clip to [0, 1], then project onto the ε-ball; final iterate."""
    s = torch.where(torch.rand(x.shape) < 0.5, 1.0, -1.0)   # robustlib's draw: +1 where u < ½
    x0 = x + eps * s
    x_t, w, step = x0.clone(), w0, 2 * eps
    rows = torch.arange(len(y))
    for t in range(steps):
        if t in sched:
            step = step / 10
        x_t.requires_grad_(True)
        p_ref = torch.softmax(model(x0), 1)                  # the reference point is the noisy start x₀
        p = torch.softmax(model(x_t), 1)
        other = (p - 1000 * F.one_hot(y, p.shape[1])).argmax(1)
        loss = (p[rows, other] - p[rows, y]).mean()
        if t <= lin:
            loss = loss + w * ((p_ref - p) ** 2).sum(1).mean()
            w = w - w0 / lin
        g, = torch.autograd.grad(loss, x_t)
        x_t = (x_t.detach() + step * g.sign()).clamp(0, 1)
        x_t = x + (x_t - x).clamp(-eps, eps)
    return x_t.detach()


@pytest.mark.parametrize("eps_255, steps, lin, sched", [
    (8, 100, 25, (60, 85)),          # the tables' GAMA-PGD-100
    (2, 100, 25, (60, 85)),          # a radius where only some images fall
    (4, 40, 10, (24, 34)),           # the chapters' reduced budget: relaxation g/4, drops at 0.6g and 0.85g
])
def test_gama_pgd_matches_the_official_update(tiny, eps_255, steps, lin, sched):
    model, x, y = tiny
    eps = eps_255 / 255
    torch.manual_seed(SEED)
    ours = GAMAPGD(eps, steps, relax_steps=lin, drops=sched).perturb(model, x, y)
    torch.manual_seed(SEED)
    ref = gama_reference(model, x, y, eps, steps, lin=lin, sched=sched)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    assert torch.equal(_correct(model, ours, y), _correct(model, ref, y))
    torch.manual_seed(SEED)
    flags = GAMAPGD(eps, steps, relax_steps=lin, drops=sched).robust_flags(model, x, y)[f"gama{steps}"]
    assert torch.equal(flags, _correct(model, x, y) & _correct(model, ref, y))


def test_gama_reference_fixture_is_not_trivial(tiny):
    """The comparison above is informative only if the attack moves images and flips some but not all of them."""
    model, x, y = tiny
    torch.manual_seed(SEED)
    ref = gama_reference(model, x, y, 2 / 255)
    clean, adv = _correct(model, x, y), _correct(model, ref, y)
    assert 0 < (clean & adv).sum() < clean.sum() < len(y)
    assert ((ref == 0) | (ref == 1)).float().mean() > 0.05   # the [0, 1] clip is active


# --------------------------------------------------------------------------------------- NuAT's MSPGD snapshots (§3)

def mspgd_reference(model, x, y, eps, alpha, record):
    """NuAT's multi-step PGD evaluator as nuat.md §3 states it: one uniform start in [−ε, ε] (not clipped before the
    first forward); cross-entropy; signed steps of ``alpha``; after each step clip to [0, 1] and project onto the
    ε-ball; the image stored for PGD-k is the iterate after k updates of that single run."""
    noise = torch.empty_like(x).uniform_(-eps, eps)
    out = {}
    for t in range(1, max(record) + 1):
        img = (x + noise).requires_grad_(True)
        g, = torch.autograd.grad(F.cross_entropy(model(img), y), img)
        img = (img.detach() + alpha * g.sign()).clamp(0, 1)
        noise = (img - x).clamp(-eps, eps)
        if t in record:
            out[t] = x + noise
    return out


RECORD = (1, 2, 3, 4, 5, 7, 10, 20)


@pytest.mark.parametrize("eps_255, alpha_255", [(8, 2), (2, 0.5)])
def test_pgd_snapshots_match_the_official_multi_step_evaluator(tiny, eps_255, alpha_255):
    model, x, y = tiny
    eps, alpha = eps_255 / 255, alpha_255 / 255
    attack = PGD(eps, alpha, max(RECORD), start="uniform", clip_start=False,   # the NuAT chapter's evaluator
                 record={f"pgd{k}": k for k in RECORD})
    torch.manual_seed(SEED)
    flags = attack.robust_flags(model, x, y)
    torch.manual_seed(SEED)
    ref = mspgd_reference(model, x, y, eps, alpha, RECORD)
    clean = _correct(model, x, y)
    for k in RECORD:
        # robustlib scores clean-and-adversarial correct; MSPGD scores the adversarial image only
        assert torch.equal(flags[f"pgd{k}"], clean & _correct(model, ref[k], y)), f"PGD-{k} flags differ"
    torch.manual_seed(SEED)
    final = PGD(eps, alpha, max(RECORD), start="uniform", clip_start=False).perturb(model, x, y)
    torch.testing.assert_close(final, ref[max(RECORD)], rtol=0, atol=1e-6)


def test_mspgd_reference_fixture_is_not_trivial(tiny):
    """The snapshot comparison is informative only if the flags change between recorded steps."""
    model, x, y = tiny
    torch.manual_seed(SEED)
    ref = mspgd_reference(model, x, y, 2 / 255, 0.5 / 255, RECORD)
    counts = [int((_correct(model, x, y) & _correct(model, ref[k], y)).sum()) for k in RECORD]
    assert len(set(counts)) >= 3, counts
