"""Finite-difference gradient regularisation (Finlay & Oberman): the penalty and its exact reference, the ResNeXt and
its smooth ReLU, minimum adversarial distances, lower bounds and Lanczos, and the chapter in the smoke profile."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import robustlib as rl
from robustlib import reported, results
from robustlib.bounds import (bound_stats, c_bound, cw_prob_loss, hessian_extreme_eigs, l_bound, lanczos,
                              soft_cw_prob_loss, soft_cw_threshold)
from robustlib.cost import CostMeter
from robustlib.distances import (error_at, error_curve, fab_min_distance, improvement_ratio, mean_distance,
                                 min_distances, pgd_min_distance, AttackBudget)
from robustlib.methods.gradreg import (DoubleBackpropGR, FiniteDifferenceGR, dual_norm_sq, exact_penalty,
                                       fd_direction, fd_penalty)
from robustlib.models.resnext import BranchBlock, ConvBNBias, LinearBNBias, smooth_relu


def tiny(name="smooth_resnext34_2x32", seed=0, dtype=torch.float64, width=4, blocks=(1, 1, 1)):
    torch.manual_seed(seed)
    return rl.build_model(name, width=width, blocks=blocks).to(dtype).eval()


def batch(n=6, size=8, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g, dtype=dtype), torch.randint(0, 10, (n,), generator=g)


def per_image_grad(model, x, y):
    xi = x.clone().requires_grad_(True)
    g, = torch.autograd.grad(F.cross_entropy(model(xi), y, reduction="sum"), xi)
    return g


# ---------------------------------------------------------------------------------------------- the penalty


def test_fd_penalty_converges_to_the_exact_squared_l2_norm_as_h_shrinks():
    model, (x, y) = tiny(), batch()
    exact = dual_norm_sq(per_image_grad(model, x, y), "l2")
    errs = {}
    for h in (1e-2, 1e-3, 1e-4, 1e-5):
        _, D, _ = fd_penalty(model, x, y, h, "l2")
        errs[h] = ((D.detach() ** 2 - exact).abs() / exact).max().item()
    assert errs[1e-5] < 1e-4
    for a, b in ((1e-2, 1e-3), (1e-3, 1e-4)):      # first-order: the error falls ~10× per decade of h
        assert 5 < errs[a] / errs[b] < 20


def test_the_l1_variant_estimates_the_squared_l1_norm_over_N():
    model, (x, y) = tiny(), batch()
    g = per_image_grad(model, x, y)
    target = g.flatten(1).abs().sum(1) ** 2 / g[0].numel()
    assert torch.allclose(dual_norm_sq(g, "l1"), target)
    _, D, _ = fd_penalty(model, x, y, 1e-6, "l1")
    assert torch.allclose(D.detach() ** 2, target, rtol=1e-4)
    # and on a hand-made gradient: <g, sign(g)/√N>² = ‖g‖₁²/N
    gh = torch.tensor([[3.0, -1.0, 0.5, -0.5]])
    d = fd_direction(gh, "l1")
    assert torch.allclose(d, torch.tensor([[1.0, -1.0, 1.0, -1.0]]) / 2)
    assert float((gh * d).sum()) ** 2 == pytest.approx(5.0 ** 2 / 4)


def test_direction_is_detached_with_unit_l2_norm():
    g = torch.randn(5, 3, 4, 4, requires_grad=True) * 3
    for norm in ("l2", "l1"):
        d = fd_direction(g, norm)
        assert not d.requires_grad and d.grad_fn is None
        assert torch.allclose(d.flatten(1).norm(dim=1), torch.ones(5))
    z = torch.zeros(2, 3, 4, 4)
    assert torch.equal(fd_direction(z, "l2"), z) and torch.equal(fd_direction(z, "l1"), z)


def test_no_gradient_flows_through_the_direction():
    """The parameter gradient of the FD penalty equals that of (ℓ(x + h·d) − ℓ(x))/h with d a constant."""
    model, (x, y) = tiny(dtype=torch.float64), batch()
    model.train()
    h = 0.1
    _, D, _ = fd_penalty(model, x, y, h, "l2")
    got = torch.autograd.grad(D.pow(2).mean(), list(model.parameters()))
    xi = x.clone().requires_grad_(True)
    ce = F.cross_entropy(model(xi), y, reduction="none")
    g, = torch.autograd.grad(ce.mean(), xi, retain_graph=True)
    d = (g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).detach()
    D2 = (F.cross_entropy(model(x + h * d), y, reduction="none") - ce) / h
    want = torch.autograd.grad(D2.pow(2).mean(), list(model.parameters()))
    for a, b in zip(got, want):
        assert torch.allclose(a, b, atol=1e-10)


def _step():
    return SimpleNamespace(trainer=SimpleNamespace(meter=CostMeter()))


def test_penalties_run_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    model = rl.build_model("resnext34_2x32", width=4, blocks=(1, 1, 1)).eval()
    x, y = batch(dtype=torch.float32)
    for method in (FiniteDifferenceGR(1.0, 0.01, "l1"), DoubleBackpropGR(1.0, "l2")):
        ref, logs = method.loss(model, x, y, _step())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under, logs_b = method.loss(model, x, y, _step())
        assert under.dtype == torch.float32
        assert float(under.detach()) == pytest.approx(float(ref.detach()), rel=1e-6)
        assert float(logs_b["penalty"]) == pytest.approx(float(logs["penalty"]), rel=1e-6)


def test_exact_penalty_trains_the_parameters_and_matches_fd():
    """create_graph=True: the double-backprop penalty has a parameter gradient (forgetting it gives zero)."""
    model, (x, y) = tiny(), batch()
    _, pen, _ = exact_penalty(model, x, y, "l2")
    grads = torch.autograd.grad(pen.sum(), [p for p in model.parameters()], allow_unused=True)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0
    _, D, _ = fd_penalty(model, x, y, 1e-6, "l2")
    assert torch.allclose(pen.detach(), D.detach() ** 2, rtol=1e-4)


@pytest.mark.parametrize("method,fwd,bwd", [(FiniteDifferenceGR(0.1, 0.01, "l2"), 2, 3),
                                            (DoubleBackpropGR(0.1, "l1"), 1, 3)])
def test_cost_meter_counts_5N_for_fd_and_4N_for_double_backprop(method, fwd, bwd):
    data = rl.load_dataset("synthetic", "train", n=64, size=8)
    cfg = rl.TrainConfig(epochs=1, batch_size=32, augment=None, schedule={"name": "constant", "lr": 0.01})
    res = rl.train(rl.build_model("resnext34_2x32", width=4, blocks=(1, 1, 1)), method, data, cfg, device="cpu",
                   progress_bar=False)
    assert res.cost["model.forward"] == pytest.approx(fwd)
    assert res.cost["model.backward"] == pytest.approx(bwd)   # DBP: 2 seen by the hooks + 1 charged explicitly
    assert np.isfinite(res.history["penalty"].iloc[-1])


def test_config_errors_are_explained():
    with pytest.raises(rl.ConfigError, match="penalty norm"):
        FiniteDifferenceGR(norm="linf")
    with pytest.raises(rl.ConfigError, match="h must be > 0"):
        FiniteDifferenceGR(h=0)


# ----------------------------------------------------------------------------------------------- the network


def test_resnext34_2x32_has_the_papers_size_and_quirks():
    full = rl.build_model("resnext34_2x32")
    assert sum(p.numel() for p in full.parameters()) == pytest.approx(3.9e6, rel=0.01)
    assert len([m for m in full.modules() if isinstance(m, BranchBlock)]) == 15
    assert isinstance(full.stem, ConvBNBias) and not full.stem.bn.affine and full.stem.bias.requires_grad
    assert sum(isinstance(m, nn.AvgPool2d) for m in full.modules()) == 2
    assert not any(isinstance(m, nn.Conv2d) and m.stride != (1, 1) for m in full.modules())
    assert isinstance(full.fc, LinearBNBias) and not full.fc.bn.affine
    m = tiny("resnext34_2x32", dtype=torch.float32)
    x = torch.rand(4, 3, 32, 32) - 0.5
    assert (m(x) >= 0).all() and (m.train()(x) >= 0).all()          # ReLU on the logits
    plain = rl.build_model("resnext34_2x32", width=4, blocks=(1, 1, 1), logit_activation=False).eval()
    assert (plain(x) < 0).any()


def test_branch_block_averages_its_two_groups():
    torch.manual_seed(0)
    blk = BranchBlock(4).eval()
    x = torch.randn(2, 4, 6, 6)
    y = blk.bn1(blk.conv1(F.relu(blk.bn0(blk.conv0(x)))))
    want = F.relu(x + (y[:, :4] + y[:, 4:]) / 2)
    assert torch.allclose(blk(x), want, atol=1e-6)


def test_smooth_relu_is_the_papers_c2_function():
    t = torch.tensor([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    z = t + 0.5
    want = torch.where(t >= 0.5, t, torch.where(t > -0.5, -0.5 * z ** 4 + z ** 3, torch.zeros_like(t)))
    assert torch.allclose(smooth_relu(t), want)
    for knot in (-0.5, 0.5):                       # value, slope and curvature continuous at the knots
        e = 1e-6
        a = torch.tensor([knot - e, knot + e], dtype=torch.float64, requires_grad=True)
        d1, = torch.autograd.grad(smooth_relu(a).sum(), a, create_graph=True)
        d2, = torch.autograd.grad(d1.sum(), a)
        assert abs(float((d1[0] - d1[1]).detach())) < 1e-5 and abs(float(d2[0] - d2[1])) < 1e-4
    m = tiny()
    assert not any(isinstance(mod, nn.ReLU) for mod in m.modules())


# ------------------------------------------------------------------------------------------ minimum distances


class _Linear(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(48, 3)

    def forward(self, x):
        return self.l(x.flatten(1))


def _linear_case():
    torch.manual_seed(0)
    m = _Linear().eval()
    x = 0.4 + 0.2 * torch.rand(30, 3, 4, 4)
    with torch.no_grad():
        z = m(x)
    y = z.argmax(1)
    W = m.l.weight.detach()

    def exact(norm):
        out = []
        for i in range(len(x)):
            c = int(y[i])
            ds = []
            for j in range(3):
                if j != c:
                    w = W[j] - W[c]
                    ds.append(float(z[i, c] - z[i, j]) / float(w.abs().sum() if norm == "linf" else w.norm()))
            out.append(min(ds))
        return torch.tensor(out)
    return m, x, y, exact


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_minimum_distance_attacks_find_the_exact_distance_of_a_linear_model(norm):
    m, x, y, exact = _linear_case()
    ex = exact(norm)
    pgd = pgd_min_distance(m, x, y, norm, eps_max=0.05 if norm == "linf" else 0.5, steps=20, bisect_steps=12)
    fab = fab_min_distance(m, x, y, norm, n_iter=30)
    for d in (pgd, fab):
        assert (d >= ex * (1 - 1e-4)).all()        # no attack beats the true minimum
        assert (d <= ex * 1.01 + 1e-4).all()       # and both get within 1 %


def test_min_distances_counts_clean_errors_at_zero_and_takes_the_minimum():
    m, x, y, _ = _linear_case()
    y = y.clone()
    y[:3] = (y[:3] + 1) % 3                        # three clean errors
    df = min_distances(m, x, y, AttackBudget("linf", eps_max=0.05, pgd_steps=5, bisect_steps=4, fab_iter=5))
    assert (df.loc[:2, ["pgd", "fab", "best"]] == 0).all().all() and not df.clean_correct[:3].any()
    assert np.allclose(df.best, np.minimum(df.pgd, df.fab))


def test_distance_statistics():
    d = np.array([0.0, 0.0, 1 / 255, 3 / 255, 9 / 255, np.inf])
    assert error_at(d, 2 / 255) == pytest.approx(50.0)
    assert error_at(d, 8 / 255) == pytest.approx(100 * 4 / 6)
    assert list(error_curve(d, [0.0, 1.0])) == pytest.approx([100 * 2 / 6, 100 * 5 / 6])
    assert mean_distance(d, cap=1.0) == pytest.approx((13 / 255 + 1) / 6)
    assert math.isinf(mean_distance(d))
    # arXiv v1's improvement ratio, recomputed from the poster's numbers
    p = {m: reported.lookup("gradreg", "poster_linf", m) for m in ("Undefended", "7-step AT",
                                                                  "squared l1 lambda=0.1")}
    r_at = improvement_ratio(p["Undefended"]["err_clean"], p["Undefended"]["mean_dist"],
                             p["7-step AT"]["err_clean"], p["7-step AT"]["mean_dist"])
    r_l1 = improvement_ratio(p["Undefended"]["err_clean"], p["Undefended"]["mean_dist"],
                             p["squared l1 lambda=0.1"]["err_clean"], p["squared l1 lambda=0.1"]["mean_dist"])
    assert r_at == pytest.approx(reported.lookup("gradreg", "arxiv_linf", "7-step AT")["ratio"], abs=0.01)
    assert r_l1 == pytest.approx(reported.lookup("gradreg", "arxiv_linf", "squared l1 lambda=0.1")["ratio"],
                                 abs=0.02)


# ---------------------------------------------------------------------------------------------------- bounds


def test_cw_losses_on_probabilities():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 0.0]])
    y = torch.tensor([0, 0])
    hard = cw_prob_loss(logits, y)
    assert hard[0] < 0 < hard[1]                   # correct → negative, misclassified → positive
    assert (soft_cw_prob_loss(logits, y) <= hard + 1e-7).all()


def test_bound_formulas():
    loss = np.array([-0.5, -0.2, 0.3])             # the third image is misclassified: bound 0
    g = np.array([1.0, 2.0, 1.0])
    lb, L = l_bound(loss, g)
    assert L == 2.0 and np.allclose(lb, [0.25, 0.1, 0.0])
    assert np.allclose(c_bound(loss, g, 1e-12), loss.clip(max=0) * -1 / g)   # C → 0: first-order bound
    # exact for a quadratic: ℓ(t) = −gap + g·t + C·t²/2 crosses 0 at the C-bound
    gap, gg, C = 0.3, 0.7, 5.0
    t = c_bound(np.array([-gap]), np.array([gg]), C)[0]
    assert -gap + gg * t + C * t * t / 2 == pytest.approx(0.0, abs=1e-12)


def test_lanczos_matches_dense_eigenvalues():
    torch.manual_seed(0)
    B, N = 3, 20
    M = torch.randn(B, N, N, dtype=torch.float64)
    M = (M + M.transpose(1, 2)) / 2
    lo, hi, _ = lanczos(lambda v: torch.einsum("bij,bj->bi", M, v.reshape(B, N)), (B, N), iters=N, tol=0,
                        dtype=torch.float64)
    e = torch.linalg.eigvalsh(M)
    assert torch.allclose(hi, e[:, -1], atol=1e-10) and torch.allclose(lo, e[:, 0], atol=1e-10)


def test_lanczos_on_hessian_vector_products_matches_a_dense_hessian():
    model = tiny(blocks=(1, 1))                    # two stages: 2×2 inputs, 12 input dimensions
    x, y = batch(n=2, size=2)
    lo, hi = hessian_extreme_eigs(model, x, y, soft_cw_prob_loss, iters=12, tol=0)
    for i in range(2):
        H = torch.autograd.functional.hessian(lambda z: soft_cw_prob_loss(model(z[None]), y[i:i + 1]).sum(), x[i])
        e = torch.linalg.eigvalsh(H.reshape(12, 12))
        assert float(hi[i]) == pytest.approx(float(e[-1]), rel=1e-6, abs=1e-12)
        assert float(lo[i]) == pytest.approx(float(e[0]), rel=1e-6, abs=1e-12)
        assert abs(float(e[-1])) > 1e-8            # a non-trivial Hessian


def test_soft_cw_threshold_holds_at_misclassified_points():
    torch.manual_seed(0)
    logits = torch.randn(2000, 10) * torch.rand(2000, 1) * 3
    y = torch.randint(0, 10, (2000,))
    wrong = cw_prob_loss(logits, y) >= 0
    assert wrong.any()
    assert (soft_cw_prob_loss(logits, y)[wrong] >= soft_cw_threshold(10) - 1e-7).all()


def test_lower_bounds_never_exceed_attack_distances_on_a_trained_smooth_model():
    """As in the paper, L and C are the maxima over the evaluated test images (here 400); the bounds are then checked
    against the attacks' distances on the first 32 of them. The authors' SoftCW threshold 0 is not a sound
    misclassification threshold, so their C-bound variant may exceed the distances; ours (−ln K/τ) must not."""
    data = rl.load_dataset("synthetic", "train", n=512, size=8)
    test = rl.load_dataset("synthetic", "test", n=400, size=8)
    # fp32 (amp off): under amp="auto" a CPU with native bf16 trains in bf16, and how well this tiny model fits then
    # depends on the machine (the precondition below held on AVX512-BF16, not on AMX)
    cfg = rl.TrainConfig(epochs=4, batch_size=64, augment=None, amp="off", schedule={
        "name": "cyclic", "max_lr": 0.1, "up": 1, "down": 3, "cycle_momentum": False})
    torch.manual_seed(0)
    model = rl.train(rl.build_model("smooth_resnext34_2x32", width=4, blocks=(1, 1, 1)), rl.methods.Standard(),
                     data, cfg, device="cpu", progress_bar=False).model.eval()
    x, y = test.images(), test.y
    b = bound_stats(model, x, y, curvature=True, iters=10)
    n = 32
    d = min_distances(model, x[:n], y[:n], AttackBudget("l2", eps_max=1.0, pgd_steps=10, bisect_steps=6,
                                                        fab_iter=10)).best.to_numpy()
    assert (b.loss < 0).mean() > 0.8 and (b.lbound[b.loss < 0] > 0).all()   # trained: most images have a gap
    assert (b.cbound > 0).any() and b.C > 0
    assert (b.lbound[:n] <= d + 1e-9).all()
    assert (b.cbound[:n] <= d + 1e-9).all()


# ---------------------------------------------------------------------------------------------- the chapter


def test_recipes_name_registered_methods_and_models_with_a_source_and_cover_every_row_once():
    from robustlib.chapters import gradreg as ch
    from robustlib.chapters.gradreg.recipes import PARTS
    for label, r in ch.RECIPES.items():
        assert r["method"] in rl.methods.METHODS.names() and r["model"] in rl.models.MODELS.names(), label
        assert r["source"] and set(r["evals"]) <= {"linf", "l2"}
        assert (r["amp"] == "off") == (r["method"] in ("fd_gradreg", "dbp_gradreg"))   # penalties in strict fp32
    planned = [k for labels in PARTS.values() for k in labels]
    assert sorted(planned) == sorted(ch.RECIPES)                      # every row trained by exactly one notebook
    for row in ch.MAIN_ROWS + ch.L2_ROWS:
        assert row in ch.RECIPES
    ablation = sorted(r["ablation"] for r in ch.RECIPES.values() if r["ablation"])
    assert ablation == sorted(reported.methods("gradreg", "journal_h_ablation"))
    assert ch.RECIPES["squared l1 lambda=1"]["hp"]["h"] == 0.1 and ch.RECIPES["squared l1 lambda=0.1"]["hp"]["h"] == 0.01
    at = ch.RECIPES["7-step AT"]["hp"]
    assert at["steps"] == 7 and at["start"] is None and at["alpha"] == pytest.approx(1.98 / 255, abs=0.01 / 255)
    assert ch.recipe_table().shape[0] == len(ch.RECIPES)


def test_specs_follow_the_authors_recipe_and_the_quick_plan_fits_its_budget(tmp_path):
    from robustlib.chapters import gradreg as ch
    from robustlib.schedules import StepDecay
    cfg = ch.config("paper", out_dir=str(tmp_path), device="cpu")
    sp = cfg.specs["squared l1 lambda=1"]
    assert isinstance(sp.config.schedule, StepDecay) and sp.config.epochs == 200 and sp.config.batch_size == 128
    assert [sp.config.schedule(e)[0] for e in (0, 59.9, 60, 120, 160)] == pytest.approx([0.1, 0.1, 0.02, 0.004, 0.0008])
    assert sp.config.augment == rl.Augment(crop_padding=4, fill=128, flip=True, cutout=16)
    assert sp.config.weight_decay == 5e-4 and sp.config.momentum == 0.9 and not sp.config.nesterov
    assert sp.rows == {"squared l1 lambda=1": "model", "h=0.1": "model"}
    m = sp.make_method()
    assert isinstance(m, FiniteDifferenceGR) and (m.lam, m.h, m.norm) == (1.0, 0.1, "l1") and m.derived_passes() == 5
    assert ch.describe(cfg.specs["7-step AT"]) == "7-step ℓ∞ PGD-AT (no random start, step 0.43/√3072, ε = 0.0314)"
    quick = ch.config("quick", out_dir=str(tmp_path), device="cpu")
    assert quick.specs["Undefended"].config.epochs == 4 and quick.epochs == 4
    assert all(quick.estimate_minutes(p) <= 8 for p in ch.PARTS)
    plan = quick.plan("baselines")
    assert list(plan.index.get_level_values("row")) == ["Undefended", "7-step AT", "DBP squared l1 lambda=1"]
    assert list(plan["derived N"]) == [2.0, 16.0, 4.0]                 # the methods' own statements


def test_an_override_changes_the_spec_and_its_fingerprint_and_bad_overrides_are_explained(tmp_path):
    from robustlib.chapters import gradreg as ch
    from robustlib.training import run_fingerprint
    data = rl.load_dataset("synthetic", "train", n=64, size=8)
    base = ch.config("smoke", out_dir=str(tmp_path), device="cpu")
    over = ch.config("smoke", out_dir=str(tmp_path), device="cpu", overrides={"h=0.1": {"h": 0.01, "epochs": 3}})
    a, b = base.specs["squared l1 lambda=1"], over.specs["squared l1 lambda=1"]
    assert b.hp == {**a.hp, "h": 0.01} and b.config.epochs == 3 and b.alias == a.alias
    fp = lambda sp: run_fingerprint(sp.make_model(), sp.make_method(), data, sp.config)  # noqa: E731
    assert fp(a) != fp(b)
    assert fp(base.specs["Undefended"]) == fp(over.specs["Undefended"])            # other rows unchanged
    with pytest.raises(rl.ConfigError, match="unknown rows"):
        ch.config("smoke", out_dir=str(tmp_path), device="cpu", overrides={"squared l1 lambda=3": {"h": 1}})
    with pytest.raises(rl.ConfigError, match="valid: lam, h, norm, order, strict"):
        ch.config("smoke", out_dir=str(tmp_path), device="cpu", overrides={"squared l1 lambda=1": {"lambda": 2}})


def test_the_by_hand_fd_step_of_the_notebook_equals_the_library_loss():
    """The chapter notebook's by-hand cell: g = ∇ₓ mean ℓ, d = sign(g)/√N detached, D = (ℓ(x + h·d) − ℓ(x))/h,
    loss = mean ℓ + (λ/2)·mean D², in fp32 strict mode, equal to FiniteDifferenceGR.loss (value and weight gradient)."""
    from robustlib.utils import fp32_strict
    torch.manual_seed(0)
    model = rl.build_model("resnext34_2x32", width=4, blocks=(1, 1, 1)).train()
    x, y = batch(n=8, size=32, dtype=torch.float32)
    lam, h = 1.0, 0.1
    with fp32_strict():
        xi = x.clone().requires_grad_(True)
        ell = F.cross_entropy(model(xi), y, reduction="none")
        g, = torch.autograd.grad(ell.mean(), xi, retain_graph=True)
        d = (g.sign() / math.sqrt(g[0].numel())).detach()
        D = (F.cross_entropy(model(x + h * d), y, reduction="none") - ell) / h
        by_hand = ell.mean() + lam / 2 * D.pow(2).mean()
        library, _ = FiniteDifferenceGR(lam, h, "l1").loss(model, x, y, None)
        params = list(model.parameters())
        ga, gb = torch.autograd.grad(by_hand, params), torch.autograd.grad(library, params)
    assert torch.allclose(by_hand, library)
    assert all(torch.allclose(u, v, atol=1e-6) for u, v in zip(ga, gb))


def test_chapter_runs_in_the_smoke_profile(tmp_path, data_root):
    import matplotlib
    matplotlib.use("Agg")
    from robustlib.chapters import gradreg as ch
    cfg = ch.config("smoke", data_dir=str(data_root), out_dir=str(tmp_path), device="cpu")
    cfg.n_test = 8
    train, test = ch.load_data(cfg)
    test = test.head(8)
    rep = ch.report(cfg)
    labels = ["Undefended", "squared l1 lambda=1"]
    runs = {k: ch.train_row(cfg, k, train, progress=False) for k in labels}
    assert runs["squared l1 lambda=1"].folder.name.startswith("gradreg-squared-l1-lambda-1-")
    evals = {k: ch.evaluate(cfg, t, test) for k, t in runs.items()}
    ch.add_rows(cfg, rep, runs, evals)
    ch.add_missing_rows(rep)
    table = ch.compare(rep, "cifar10_linf")
    assert ("squared l1 lambda=1", "err_8") in table.index
    assert table.loc[("ImageNet-1k Undefended", "err_clean"), "paper"] == 6.94
    assert ch.compare(rep, "h_ablation").loc[("h=0.1", "err_8"), "paper"] == 58.69
    for fig in (ch.plot_distance_curves(cfg, evals), ch.plot_bounds(cfg, evals), ch.plot_h_ablation(rep),
                ch.plot_training(runs)):
        rep.savefig(fig, "f")
    agreement = ch.fd_vs_exact(cfg, {"undefended": runs["Undefended"].model()}, test)
    f64 = agreement[agreement.precision == "float64"].sort_values("h")
    assert f64.median_rel_err.iloc[0] < f64.median_rel_err.iloc[-1]          # the error shrinks with h
    doc = results.load(rep.write())
    assert {r["table"] for r in doc["rows"]} >= {"cifar10_linf", "cifar10_l2", "constants", "h_ablation"}
    # the evaluation is cached beside the checkpoint (experiment.cached) and comes back equal
    folder = runs["Undefended"].folder          # may hold the smoke batch's evaluations too (shared test cache)
    cached = set(folder.glob("eval-*.json"))
    assert cached
    again = ch.evaluate(cfg, runs["Undefended"], test)
    assert set(folder.glob("eval-*.json")) == cached   # nothing new: it came from the cache
    assert np.array_equal(again.dist("linf"), evals["Undefended"].dist("linf"))
    assert np.array_equal(again.arrays["b_lbound"], evals["Undefended"].arrays["b_lbound"], equal_nan=True)
    costs = ch.measure_costs(cfg, train)
    assert list(costs["measured_N"]) == list(costs["derived_N"]) == [2.0, 5.0, 4.0, 16.0]


def test_trained_reopens_a_finished_run_and_trains_nothing(tmp_path, data_root, monkeypatch):
    from robustlib.chapters import gradreg as ch
    from robustlib.chapters.common import settings
    from robustlib.training import Trainer
    s = settings("smoke", 0, "cpu", str(data_root), str(tmp_path))
    t = ch.trained(s, "h=0.1", progress=False)
    assert t.spec.label == "squared l1 lambda=1" and t.spec.rows["h=0.1"] == "model" and t.result.epochs == 1
    assert ch.trained(s, "h=0.1", seed=1, progress=False).folder != t.folder          # another seed, another run
    monkeypatch.setattr(Trainer, "_run_epoch", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = ch.trained(s, "squared l1 lambda=1", progress=False)
    assert again.folder == t.folder and again.fingerprint == t.fingerprint
    for a, b in zip(again.model(again.spec.rows["squared l1 lambda=1"]).parameters(), t.model().parameters()):
        assert torch.equal(a, b)
    with pytest.raises(rl.UnknownNameError, match="squared l1 lambda=1"):
        ch.trained(s, "squared l1 lambda=2")


def _image_folder(root, classes=2, per_class=3, size=40):
    from PIL import Image
    g = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray((g.random((size, size + 7 * i, 3)) * 255).astype(np.uint8)).save(d / f"{i}.png")


@pytest.fixture
def trainer_streams(monkeypatch):
    """The change of robustlib/training.py that lets the Trainer take a streaming data source
    (gradreg.imagenet.TRAINER_CHANGE), applied here until it lands: a data source with ``batch_iterator`` makes its
    own batches; an ArrayDataset gets the BatchIterator as before."""
    from robustlib import training
    orig = training.BatchIterator

    def make(data, *args, **kwargs):
        if hasattr(data, "batch_iterator"):
            return data.batch_iterator(*args, **kwargs)
        return orig(data, *args, **kwargs)
    monkeypatch.setattr(training, "BatchIterator", make)


def test_the_imagenet_stream_is_deterministic_per_epoch_and_independent_of_workers(tmp_path):
    from robustlib.chapters.gradreg.imagenet import ImageFolderStream
    _image_folder(tmp_path)
    a = ImageFolderStream(tmp_path / "train", image_size=16, workers=0)
    b = ImageFolderStream(tmp_path / "train", image_size=16, workers=1)
    assert len(a) == 6 and a.num_classes == 2 and a.y.tolist() == [0, 0, 0, 1, 1, 1] and "16px" in a.name
    ia, ib = a.batch_iterator(2, device="cpu", seed=3), b.batch_iterator(2, device="cpu", seed=3)
    assert len(ia) == 3
    e0 = list(ia.epoch(0))
    for (xa, ya), (xb, yb) in zip(e0, ib.epoch(0)):
        assert xa.shape == (2, 3, 16, 16) and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(x0, x1) for (x0, _), (x1, _) in zip(e0, ia.epoch(1)))
    with pytest.raises(rl.ConfigError, match="augment=None"):
        a.batch_iterator(2, device="cpu", augment=rl.Augment())
    with pytest.raises(rl.ConfigError, match="batch_iterator"):
        a.x


def test_imagenet_rows_train_through_the_trainer_and_evaluate_on_a_tiny_image_folder(tmp_path, trainer_streams):
    from robustlib.chapters.gradreg import imagenet
    _image_folder(tmp_path)
    kw = dict(image_size=32, workers=0, device="cpu", progress=False, arch="resnet18", epochs=1, batch_size=2,
              max_batches=2)
    t = imagenet.train_imagenet(str(tmp_path / "train"), str(tmp_path / "runs"), **kw)
    assert t.spec.method == "fd_gradreg" and t.spec.hp == {"lam": 0.1, "h": 0.01, "norm": "l2"}
    assert t.result.epochs == 1 and t.cost_passes == 5.0 and (t.folder / "last.pt").exists()
    assert t.spec.config.schedule.describe()["name"] == "cosine"
    again = imagenet.train_imagenet(str(tmp_path / "train"), str(tmp_path / "runs"), **kw)
    assert again.folder == t.folder and again.result.train_seconds == t.result.train_seconds   # reopened
    out = imagenet.evaluate_imagenet(str(tmp_path / "val"), t, n=2, image_size=32, device="cpu",
                                     budget=AttackBudget("linf", eps_max=8 / 255, pgd_steps=1, bisect_steps=1,
                                                         fab_iter=1, batch_size=2))
    assert out["n"] == 2 and 0 <= out["top1_err"] <= 100 and 0 <= out["err_8"] <= 100
    assert len(list(t.folder.glob("eval-*.json"))) == 1


def test_architecture_facts_show_the_logit_relu_and_the_paper_size():
    from robustlib.chapters import gradreg as ch
    facts = ch.architecture_facts()
    assert facts["min_logit_random_images"] >= 0.0
    assert facts["parameters_M"] == pytest.approx(3.9, abs=0.1)   # the paper notes: ≈ 3.9 M parameters


@pytest.mark.parametrize("norm, eps", [("linf", 8 / 255), ("linf", 2 / 255), ("l2", 0.5)])
def test_error_at_counts_a_projected_perturbation_as_within_its_budget(norm, eps):
    """A float32 perturbation projected onto the ε-ball measures ε + ~3·10⁻⁸ (rounding at the pixel's value); it is
    an error at ε. One of ε·(1 + 10⁻⁴) is not."""
    from robustlib.attacks import project
    from robustlib.distances import perturbation_norm
    g = torch.Generator().manual_seed(0)
    x = torch.randint(128, 240, (64, 3, 16, 16), generator=g).float() / 255    # pixels in [0.5, 1 − ε]
    push = torch.ones_like(x) if norm == "linf" else torch.randn(x.shape, generator=g) * 0.1 + 0.5 / 255
    on_ball = perturbation_norm(project(x + push, x, eps, norm) - x, norm).numpy()
    assert np.abs(on_ball - eps).max() < 1e-6                                 # really on the sphere
    assert error_at(on_ball, eps) == 100.0
    outside = perturbation_norm(project(x + push, x, eps * (1 + 1e-4), norm) - x, norm).numpy()
    assert error_at(outside, eps) == 0.0
    assert error_at(outside, eps * (1 + 1e-4)) == 100.0


# ------------------------------------------------------------------------------------- the cpu profile, the claims


def test_cpu_profile_narrows_the_network_trains_the_issues_rows_and_states_every_substitution(tmp_path):
    from robustlib.chapters import gradreg as ch
    from robustlib.chapters.gradreg import recipes
    cpu = ch.config("cpu", out_dir=str(tmp_path), device="cpu")
    p = recipes.PROFILES["cpu"]
    assert p["model"] == {"width": 8, "blocks": (3, 3, 3)} and p["n_train"] is None and p["n_test"] == 1000
    assert p["epochs"] == 3 and p["batch"] == 128 and p["cost_batches"] == 3
    assert p["row_epochs"] == {"Undefended (smooth)": 1, "squared l2 lambda=0.1 (smooth)": 1}
    assert (p["linf"].pgd_steps, p["linf"].bisect_steps, p["linf"].fab_iter) == (5, 5, 5)
    assert p["linf"].anchors == (2 / 255, 8 / 255) and p["linf"].attacks == ("pgd", "fab")
    assert (p["l2"].pgd_steps, p["l2"].bisect_steps, p["l2"].fab_iter) == (5, 5, 5)
    assert (p["lanczos_iters"], p["lanczos_tol"], p["fd_check_n"]) == (15, 1e-3, 100)
    # the rows the issue asks for, and nothing else; every spec is kept (the cost table times DBP)
    assert cpu.rows == ["Undefended", "7-step AT", "squared l1 lambda=0.1", "squared l1 lambda=1",
                        "squared l2 lambda=0.1", "Undefended (smooth)", "squared l2 lambda=0.1 (smooth)"]
    assert set(cpu.specs) == set(ch.RECIPES)
    assert cpu.part_labels("baselines") == ["Undefended", "7-step AT"] and cpu.part_labels("chapter") == []
    assert ch.config("quick", out_dir=str(tmp_path), device="cpu").rows == list(ch.RECIPES)
    sp = {k: cpu.specs[k] for k in cpu.rows}
    assert {k: s.config.epochs for k, s in sp.items()} == {**{k: 3 for k in cpu.rows}, **p["row_epochs"]}
    assert all(s.model_kw == {"width": 8, "blocks": (3, 3, 3)} for s in sp.values())
    # the recipes themselves are unchanged: 7 AT steps (16N), the penalties in strict fp32, h = 0.1 for λ = 1
    assert sp["7-step AT"].hp["steps"] == 7 and sp["7-step AT"].make_method().derived_passes() == 16
    assert sp["squared l1 lambda=1"].hp == {"lam": 1.0, "h": 0.1, "norm": "l1"}
    assert {k for k, s in sp.items() if s.config.amp == "off"} == {
        "squared l1 lambda=0.1", "squared l1 lambda=1", "squared l2 lambda=0.1", "squared l2 lambda=0.1 (smooth)"}
    note = " ".join(cpu.notes)
    for said in ("width 8", "3 BranchBlocks", "50 000", "first 1 000 test images", "3 epochs per row",
                 "smooth-ReLU rows 1 epoch", "(DBP) row", "squared ℓ2 λ = 1", "h-ablation", "PGD-5", "5 halvings",
                 "FAB with 5 iterations", "Lanczos ≤ 15", "strict fp32", "never in bf16",
                 "CPU scale: compare the differences between rows, not the absolute numbers."):
        assert said in note, said
    t = cpu.table()["value"]
    assert "PGD-5" in t["ℓ∞ distance"] and "FAB (untargeted, 5 iterations" in t["ℓ∞ distance"]
    assert "squared l1 lambda=1" in t["rows trained"] and "DBP" not in t["rows trained"]


def test_cpu_plan_uses_the_cpu_time_model_and_every_notebook_fits_45_minutes(tmp_path):
    from robustlib.chapters import gradreg as ch
    from robustlib.chapters.gradreg import recipes
    cpu = ch.config("cpu", out_dir=str(tmp_path), device="cpu")
    assert cpu.basis == "cpu" and ch.config("quick", out_dir=str(tmp_path), device="cpu").basis == "gpu"
    fd, smooth = cpu.specs["squared l1 lambda=1"], cpu.specs["squared l2 lambda=0.1 (smooth)"]
    assert ch.seconds_per_pass(fd, "cpu") == recipes.CPU_SECONDS_PER_PASS["fp32"] == 1.2e-3
    assert ch.seconds_per_pass(cpu.specs["Undefended"], "cpu") == recipes.CPU_SECONDS_PER_PASS["bf16"] == 6e-4
    assert ch.seconds_per_pass(smooth, "cpu") == pytest.approx(2.5 * 1.2e-3)
    assert ch.seconds_per_pass(fd) == recipes.SECONDS_PER_PASS["fp32"]        # the H200 rule is unchanged
    plan = cpu.plan()
    assert list(plan.index.get_level_values("row")) == cpu.rows
    # 7-step AT: 16 passes × 390 full batches of 128 × 3 epochs × 6e-4 s + 2 norms × 180 s ≈ 30 min
    assert plan.loc[("baselines", "7-step AT"), "minutes"] == pytest.approx((16 * 390 * 128 * 3 * 6e-4 + 360) / 60)
    minutes = {p: cpu.estimate_minutes(p) for p in ch.PARTS}
    assert all(m <= 45 for m in minutes.values()), minutes
    assert minutes["baselines"] == pytest.approx(39.3, abs=0.1) and minutes["chapter"] == pytest.approx(20.3, abs=0.1)
    assert "estimated 2 CPU cores minutes" in cpu.table().index


def _fake_run(spec, passes):
    return SimpleNamespace(spec=spec, cost_passes=passes, result=SimpleNamespace(
        train_seconds=1.0, epochs=1, hyperparameters={"resolved": {"amp": "fp32", "channels_last": False}}))


def _fake_linf(n, clean, rob2, rob8):
    i = np.arange(n)
    d = np.where(i < rob8, 9 / 255, np.where(i < rob2, 3 / 255, 1 / 255))
    d[i >= clean] = 0.0
    from robustlib.chapters.gradreg import Evaluation
    return Evaluation({"linf_best": d, "clean_correct": i < clean, "l2_best": np.where(i < clean, 0.5, 0.0),
                       "b_lbound": np.zeros(n), "b_grad_norm": np.ones(n)}, {})


def _fake_smooth(n, violations=0):
    from robustlib.chapters.gradreg import Evaluation
    cb = np.full(n, 0.2)
    cb[:violations] = 0.9                               # above the attack's distance 0.5
    return Evaluation({"l2_best": np.full(n, 0.5), "clean_correct": np.ones(n, bool), "b_lbound": np.full(n, 0.1),
                       "b_cbound": cb, "b_soft_grad_norm": np.ones(n), "b_lam_max": np.ones(n)}, {})


def test_claims_come_from_the_rows_per_image_flags(tmp_path):
    """The rows carry per-image flags (clean, rob_2, rob_8; lbound_ok, cbound_ok) built from the evaluations, and the
    claims are computed from them: supported, contradicted, not resolvable and not measured, the cost claim from the
    measured passes, the bound claims as counts over every image of the bound figure's rows."""
    from robustlib.chapters import gradreg as ch
    cfg = ch.config("smoke", out_dir=str(tmp_path), device="cpu")
    n = 100
    evals = {"Undefended": _fake_linf(n, 90, 10, 0), "7-step AT": _fake_linf(n, 85, 70, 50),
             "squared l1 lambda=0.1": _fake_linf(n, 88, 12, 0), "squared l1 lambda=1": _fake_linf(n, 80, 69, 20),
             "Undefended (smooth)": _fake_smooth(n), "squared l2 lambda=0.1 (smooth)": _fake_smooth(n, violations=1)}
    passes = {"Undefended": 2.0, "7-step AT": 16.0, "squared l1 lambda=0.1": 5.0, "squared l1 lambda=1": 5.0,
              "Undefended (smooth)": 2.0, "squared l2 lambda=0.1 (smooth)": 5.0}
    runs = {k: _fake_run(cfg.specs[k], passes[k]) for k in evals}
    cfg.n_test = n
    rep = ch.report(cfg)
    ch.add_rows(cfg, rep, runs, evals)
    rows = {(r["table"], r["method"]): r for r in rep.rows}
    fd = rows[("cifar10_linf", "squared l1 lambda=1")]
    assert set(fd["flags"]) == {"clean", "rob_2", "rob_8"} and fd["flags"]["rob_2"] == "1" * 69 + "0" * 31
    assert fd["metrics"]["err_2"] == pytest.approx(100 - 69) and fd["precision"]["amp"] == "fp32"
    assert rows[("h_ablation", "h=0.1")]["flags"]["rob_8"] == "1" * 20 + "0" * 80
    sm = rows[("cifar10_l2", "squared l2 lambda=0.1 (smooth)")]
    assert sm["flags"]["lbound_ok"] == "1" * n and sm["flags"]["cbound_ok"] == "0" + "1" * (n - 1)
    assert sm["bound_violations"]["cbound"] == pytest.approx(1.0)
    results.load(rep.write())                            # the flags and the precision pass the results schema
    table = ch.claims(rep)
    v = ch.verdicts(table)
    assert list(v) == [c.key for c in ch.CLAIMS] + [c.key for c in ch.BOUND_CLAIMS]
    assert v["fd_cost"] == "supported" and table.loc[ch.CLAIMS[0].statement, "ours"] == "0.31×"
    assert v["fd_near_at"] == "supported"               # 69 vs 70 robust at 2/255: within the 5-point margin
    assert v["fd_beats_undefended"] == "supported" and v["at_best_at_8"] == "supported"
    assert v["small_lambda_beats_undefended"] == "not resolvable at this scale"     # 12 vs 10
    assert v["fd_cleaner_than_at"] == "contradicted"    # 80 vs 85 clean
    assert v["lbound_below"] == "supported" and v["cbound_below"] == "contradicted"
    assert table.loc[ch.BOUND_CLAIMS[0].statement, "n"] == 2 * n
    assert table.loc[ch.BOUND_CLAIMS[1].statement, "ours"] == "99.5 % (199/200)"
    assert table.loc[ch.CLAIMS[1].statement, "n"] == n
    # a row that did not run: every claim on it says so
    rep.rows[:] = [r for r in rep.rows if r["method"] not in ("7-step AT", "squared l2 lambda=0.1 (smooth)")]
    again = ch.verdicts(ch.claims(rep))
    assert {k for k, s in again.items() if s == "not measured"} == {
        "fd_cost", "fd_near_at", "at_best_at_8", "fd_cleaner_than_at", "lbound_below", "cbound_below"}
    assert again["fd_beats_undefended"] == "supported"
    # a far less robust FD model contradicts "close to AT's"
    ch.add_rows(cfg, rep, {k: runs[k] for k in ("7-step AT", "squared l1 lambda=1")},
                {"7-step AT": evals["7-step AT"], "squared l1 lambda=1": _fake_linf(n, 80, 40, 20)})
    assert ch.verdicts(ch.claims(rep))["fd_near_at"] == "contradicted"
