"""Attacks: threat-model invariants, strength ordering, and that they leave the model as they found it."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import robustlib as rl
from robustlib.attacks import GAMAPGD, PGD, AutoAttack, FGSM, attack_mode, ifgsm, project

EPS = 8 / 255


def _batch(synthetic, n=64):
    te = synthetic[1]
    return te.images()[:n], te.y[:n]


ATTACKS = {
    "fgsm": lambda: FGSM(EPS),
    "fgsm_rs": lambda: FGSM(EPS, 1.25 * EPS, start="uniform"),
    "pgd_linf": lambda: PGD(EPS, 2 / 255, 5),
    "pgd_bernoulli_restarts": lambda: PGD(EPS, 2 / 255, 3, start="bernoulli", start_scale=4 / 255, restarts=2),
    "pgd_cw": lambda: PGD(EPS, 2 / 255, 3, loss="cw"),
    "pgd_targeted": lambda: PGD(EPS, 1 / 255, 3, loss="targeted"),
    "pgd_train_bn": lambda: PGD(EPS, 2 / 255, 3, bn_mode="train"),
    "ifgsm7": lambda: ifgsm(EPS, 7),
    "gama": lambda: GAMAPGD(EPS, steps=10),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_linf_attacks_stay_in_ball_and_image_range(name, standard_model, synthetic):
    x, y = _batch(synthetic)
    x_adv = ATTACKS[name]().perturb(standard_model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == torch.float32
    assert (x_adv - x).abs().max() <= EPS + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv != x).any(), "the attack changed nothing"


def test_l2_pgd_stays_in_l2_ball(standard_model, synthetic):
    x, y = _batch(synthetic)
    eps = 0.5
    x_adv = PGD(eps, 0.1, 10, norm="l2").perturb(standard_model, x, y)
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert norms.max() <= eps + 1e-5
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert norms.mean() > 0.5 * eps


def test_projection_is_idempotent_and_exact():
    x = torch.rand(4, 3, 8, 8)
    far = x + 5 * torch.randn_like(x)
    p = project(far, x, 0.1, "linf")
    assert torch.equal(project(p, x, 0.1, "linf"), p)
    assert ((p - x).abs() <= 0.1 + 1e-7).all()


def test_more_steps_never_raise_accuracy_and_pgd_beats_fgsm(standard_model, synthetic):
    te = synthetic[1]
    torch.manual_seed(0)
    res = rl.evaluate(standard_model, te, {
        "fgsm": FGSM(EPS),
        "pgd": PGD(EPS, 2 / 255, 50, record={"pgd5": 5, "pgd20": 20, "pgd50": 50})}, device="cpu", progress=False)
    acc = res.accuracies()
    assert acc["clean"] > 90
    assert acc["pgd20"] <= acc["fgsm"]
    assert acc["pgd50"] <= acc["pgd20"] <= acc["pgd5"] <= acc["clean"]
    assert acc["pgd20"] < acc["clean"] - 10, "PGD should hurt an undefended model"


def test_snapshots_match_separate_runs(standard_model, synthetic):
    """PGD-20 read from a 50-step run equals a separate 20-step run with the same random start."""
    x, y = _batch(synthetic, 128)
    torch.manual_seed(1)
    snap = PGD(EPS, 2 / 255, 50, record={"pgd20": 20}).robust_flags(standard_model, x, y)["pgd20"]
    torch.manual_seed(1)
    single = PGD(EPS, 2 / 255, 20).robust_flags(standard_model, x, y)["pgd"]
    assert torch.equal(snap, single)


def test_restarts_never_raise_accuracy(standard_model, synthetic):
    x, y = _batch(synthetic, 200)
    torch.manual_seed(0)
    one = PGD(EPS, 2 / 255, 3, restarts=1).robust_flags(standard_model, x, y)["pgd"]
    torch.manual_seed(0)
    three = PGD(EPS, 2 / 255, 3, restarts=3).robust_flags(standard_model, x, y)["pgd"]
    assert three.sum() <= one.sum()


def test_gama_is_at_least_as_strong_as_fgsm(standard_model, synthetic):
    x, y = _batch(synthetic, 200)
    gama = GAMAPGD(EPS, steps=20).robust_flags(standard_model, x, y)["gama20"]
    fgsm = FGSM(EPS).robust_flags(standard_model, x, y)["fgsm"]
    assert gama.sum() <= fgsm.sum()


def test_gama_schedules_follow_the_reference_code():
    g = GAMAPGD(8 / 255)
    assert g.weight(0) == 50 and g.weight(12.5) == 25 and g.weight(25) == 0 and g.weight(60) == 0
    assert g.step_size(0) == pytest.approx(16 / 255)
    assert g.step_size(59) == pytest.approx(16 / 255)
    assert g.step_size(60) == pytest.approx(1.6 / 255)
    assert g.step_size(85) == pytest.approx(0.16 / 255)


def test_attack_restores_model_state_and_leaves_no_gradients(synthetic):
    from conftest import tiny_resnet
    model = tiny_resnet()
    model.train()
    model.layer1.eval()  # a mixed state must come back exactly
    model.linear.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    x, y = _batch(synthetic)
    for atk in (PGD(EPS, 2 / 255, 2), PGD(EPS, 2 / 255, 2, bn_mode="train"), GAMAPGD(EPS, steps=2)):
        atk.perturb(model, x, y)
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(p.grad is None for p in model.parameters())
    assert not model.linear.weight.requires_grad and model.conv1.weight.requires_grad
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"attack changed {k}"


def test_attack_mode_sets_the_requested_bn_mode():
    bn = nn.BatchNorm2d(3)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), bn)
    model.eval()
    with attack_mode(model, "train"):
        assert bn.training
    assert not bn.training
    with pytest.raises(rl.ConfigError, match="valid: eval, train"):
        with attack_mode(model, "batch"):
            pass


def test_unknown_attack_names_and_bad_arguments():
    with pytest.raises(rl.UnknownNameError, match="Valid attack names: .*pgd"):
        rl.build_attack("pgd2")
    with pytest.raises(rl.ConfigError, match="valid norms"):
        PGD(EPS, norm="l3")
    with pytest.raises(rl.ConfigError, match="unknown PGD loss"):
        PGD(EPS, loss="hinge")


def test_autoattack_adapter_runs_and_is_not_weaker_than_fgsm(standard_model, synthetic):
    x, y = _batch(synthetic, 48)
    aa = AutoAttack(EPS, version="custom", attacks=["apgd-ce"], batch_size=48)
    aa_flags = aa.robust_flags(standard_model, x, y)["aa"]
    x_adv = aa.perturb(standard_model, x, y)
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    fgsm_flags = FGSM(EPS).robust_flags(standard_model, x, y)["fgsm"]
    assert aa_flags.sum() <= fgsm_flags.sum()
