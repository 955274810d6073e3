"""Attacks: threat-model invariants, strength ordering, and that they leave the model as they found it."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import robustlib as rl
from robustlib.attacks import GAMAPGD, PGD, AutoAttack, FGSM, attack_mode, ifgsm, predict, project

EPS = 8 / 255


@pytest.fixture
def one_thread():
    """For the tests on tiny tensors: a second intra-op thread only adds synchronisation (many times slower on a busy
    2-core machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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


def test_pgd_snapshots_hurt_an_undefended_model(standard_model, synthetic):
    """A strength check on this fixed model and seed, not an invariant: final-iterate snapshots of one run need not
    fall monotonically with the step count, so no ordering between PGD-5/20/50 is asserted."""
    te = synthetic[1].head(200)
    torch.manual_seed(0)
    res = rl.evaluate(standard_model, te, {
        "fgsm": FGSM(EPS),
        "pgd": PGD(EPS, 2 / 255, 20, record={"pgd5": 5, "pgd10": 10, "pgd20": 20})}, device="cpu", progress=False)
    acc = res.accuracies()
    assert acc["clean"] > 90
    assert max(acc["pgd5"], acc["pgd10"], acc["pgd20"]) <= acc["clean"]
    assert acc["pgd20"] <= acc["fgsm"]
    assert acc["pgd20"] < acc["clean"] - 10, "PGD should hurt an undefended model"


def _with_saturated_pixels(x):
    """The batch with its first and last two rows set to 0 and 1, so that an unclipped start leaves [0, 1]."""
    x = x.clone()
    x[..., :2, :] = 0.0
    x[..., -2:, :] = 1.0
    return x


class _Inputs(nn.Module):
    """Wraps a model and keeps a copy of every input it is called on."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.model(x)


def test_every_scored_snapshot_iterate_stays_in_the_eps_ball(standard_model, synthetic):
    """The record path scores the iterates of its own forward passes: every one lies in the ε-ball, and every one
    after the start lies in [0, 1]; the start itself is not clipped (NuAT's evaluator, nuat.md §3)."""
    x, y = _batch(synthetic, 32)
    x = _with_saturated_pixels(x)
    spy = _Inputs(standard_model)
    torch.manual_seed(0)
    PGD(EPS, 2 / 255, 6, start="uniform", clip_start=False, record={"pgd2": 2, "pgd6": 6}).robust_flags(spy, x, y)
    clean, start, *iterates = spy.seen          # clean predictions, the start, the iterates after steps 1..6
    assert torch.equal(clean, x) and len(iterates) == 6
    for it in [start] + iterates:
        assert (it - x).abs().max() <= EPS + 1e-6
    assert start.min() < 0 or start.max() > 1, "the start should not be clipped before the first forward"
    for it in iterates:
        assert it.min() >= 0 and it.max() <= 1


def test_snapshots_match_separate_runs(standard_model, synthetic):
    """PGD-10 read from a 25-step run equals a separate 10-step run with the same random start."""
    x, y = _batch(synthetic, 128)
    torch.manual_seed(1)
    snap = PGD(EPS, 2 / 255, 25, record={"pgd10": 10}).robust_flags(standard_model, x, y)["pgd10"]
    torch.manual_seed(1)
    single = PGD(EPS, 2 / 255, 10).robust_flags(standard_model, x, y)["pgd"]
    assert torch.equal(snap, single)


def _bn_model_and_batch(n=64):
    """A fixed tiny conv net with BatchNorm whose running statistics come from other images than the batch's (so the
    two BN modes classify some images differently), ``n`` random 8×8 images, and labels that are the eval-mode
    predictions except every seventh (misclassified clean)."""
    g = torch.Generator().manual_seed(11)
    x, other = torch.rand(n, 3, 8, 8, generator=g), torch.rand(64, 3, 8, 8, generator=g)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6, momentum=None), nn.ReLU(),
                          nn.Conv2d(6, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 10))
    with torch.no_grad():
        model.train()(other)
        y = model.eval()(x).argmax(1)
    y[::7] = (y[::7] + 1) % 10
    return model, x, y


def test_batch_statistics_snapshots_share_one_start_and_clean_running_stats(one_thread):
    """With ``bn_mode="train"`` every snapshot is the iterate of one run per restart (same start, same target labels)
    scored with the model's own running statistics, exactly like separate runs truncated at those steps; and the
    model's state is unchanged afterwards."""
    model, x, y = _bn_model_and_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for loss in ("ce", "targeted"):
        torch.manual_seed(1)
        snap = PGD(2 / 255, 1 / 255, 6, loss=loss, bn_mode="train", restarts=2,
                   record={"a": 2, "b": 6}).robust_flags(model, x, y)
        for key, steps in (("a", 2), ("b", 6)):
            torch.manual_seed(1)
            single = PGD(2 / 255, 1 / 255, steps, loss=loss, bn_mode="train", restarts=2).robust_flags(model, x, y)
            assert torch.equal(snap[key], single["pgd"]), f"{loss}: snapshot {key} differs from a {steps}-step run"
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"attack changed {k}"


RESTART_ATTACKS = {   # ε = 1/255: about a quarter of the images fall, and restarts still find more
    "pgd_eval": lambda r: PGD(1 / 255, 0.5 / 255, 3, restarts=r),
    "pgd_train_bn": lambda r: PGD(1 / 255, 0.5 / 255, 3, restarts=r, bn_mode="train"),
    "pgd_bernoulli_train_bn": lambda r: PGD(1 / 255, 0.5 / 255, 2, start="bernoulli", start_scale=0.5 / 255,
                                            restarts=r, bn_mode="train"),
    "pgd_snapshots_train_bn": lambda r: PGD(1 / 255, 0.5 / 255, 3, restarts=r, bn_mode="train", record={"s3": 3}),
    "gama_eval": lambda r: GAMAPGD(1 / 255, 4, relax_steps=2, drops=(3,), restarts=r),
    "gama_train_bn": lambda r: GAMAPGD(1 / 255, 4, relax_steps=2, drops=(3,), restarts=r, bn_mode="train"),
}


@pytest.mark.parametrize("name", sorted(RESTART_ATTACKS))
def test_restarts_only_remove_robust_images(name, one_thread):
    """Per-image worst case over restarts: with a fixed seed the first r restarts of an (r + 1)-restart run are the
    r-restart run, so the images robust after r + 1 restarts are a subset of those robust after r, and every robust
    image is classified correctly clean. This must hold whatever BN mode the attack crafts with."""
    model, x, y = _bn_model_and_batch()
    clean = predict(model, x) == y
    prev = clean
    for r in (1, 2, 3):
        torch.manual_seed(0)
        flags = next(iter(RESTART_ATTACKS[name](r).robust_flags(model, x, y).values()))
        assert not (flags & ~prev).any(), f"{int((flags & ~prev).sum())} images became robust with {r} restarts"
        prev = flags
    assert prev.sum() < clean.sum(), "the attack should fool some images"


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
    aa = AutoAttack(EPS, version="custom", attacks=["apgd-ce"], batch_size=48, apgd_budget=(20, 1))
    aa_flags = aa.robust_flags(standard_model, x, y)["aa"]
    x_adv = aa.perturb(standard_model, x, y)
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    fgsm_flags = FGSM(EPS).robust_flags(standard_model, x, y)["fgsm"]
    assert aa_flags.sum() <= fgsm_flags.sum()


def test_autoattack_standard_is_the_v2_suite_with_its_budgets():
    """``version="standard"`` as the adapter builds it (nuat.md §3, "AA (v2)"): APGD-CE, APGD-T, FAB-T, Square in
    that order; APGD-CE 100 iterations and no restarts; APGD-T 100 iterations, 9 target classes, 1 restart; FAB-T
    9 targets, 1 restart; Square 5 000 queries; all ℓ∞ at the given ε. (FAB runs targeted because the list names
    ``fab-t``: pyautoattack sets ``fab.targeted`` when it reaches that entry.)"""
    eps = 8 / 255
    attack = AutoAttack(eps, seed=5)
    assert attack.version == "standard"
    aa = attack._adversary(nn.Linear(2, 2), torch.device("cpu"))
    assert list(aa.attacks_to_run) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert aa.norm == "Linf" and aa.epsilon == eps and aa.seed == 5
    assert (aa.apgd.n_iter, aa.apgd.n_restarts, aa.apgd.norm, aa.apgd.eps) == (100, 1, "Linf", eps)
    t = aa.apgd_targeted
    assert (t.n_iter, t.n_target_classes, t.n_restarts, t.loss) == (100, 9, 1, "dlr-targeted")
    assert (t.norm, t.eps) == ("Linf", eps)
    assert (aa.fab.n_target_classes, aa.fab.n_restarts, aa.fab.norm, aa.fab.eps) == (9, 1, "Linf", eps)
    assert (aa.square.n_queries, aa.square.n_restarts, aa.square.norm, aa.square.eps) == (5000, 1, "Linf", eps)
    with pytest.raises(rl.ConfigError, match="standard version keeps its budgets"):
        AutoAttack(eps, apgd_budget=(5, 1))


def test_autoattack_targets_cut_apgd_t_and_fab_t_and_leave_older_cache_keys_alone():
    """``targets`` (cpu profiles) sets the target classes of APGD-T and FAB-T in a custom run; unset, it is not part
    of the attack's repr, so an evaluation cached before the setting existed keeps its key."""
    eps = 8 / 255
    aa = AutoAttack(eps, version="custom", attacks=["apgd-ce", "apgd-t"], apgd_budget=(100, 1), targets=3)
    adv = aa._adversary(nn.Linear(2, 2), torch.device("cpu"))
    assert adv.apgd_targeted.n_target_classes == 3 and adv.fab.n_target_classes == 3
    assert (adv.apgd.n_iter, adv.apgd.n_restarts) == (100, 1)
    assert "targets=3" in repr(aa)
    plain = AutoAttack(eps, version="custom", attacks=["apgd-ce"], apgd_budget=(10, 1))
    assert "targets" not in repr(plain) and repr(plain) == (
        "AutoAttack(eps=0.03137254901960784, norm='linf', bn_mode='eval', version='custom', attacks=['apgd-ce'], "
        "seed=0, batch_size=500, apgd_budget=(10, 1), square_queries=None)")
    assert plain._adversary(nn.Linear(2, 2), torch.device("cpu")).apgd_targeted.n_target_classes == 9
    with pytest.raises(rl.ConfigError, match="standard version keeps its budgets"):
        AutoAttack(eps, targets=3)
    with pytest.raises(rl.ConfigError, match="1 to 9 target classes"):
        AutoAttack(eps, version="custom", attacks=["apgd-t"], targets=12)


class _Spy(nn.Module):
    """Records, at every forward pass, the state an attack runs the model in."""

    def __init__(self):
        super().__init__()
        self.log, self._owner = [], []

    def forward(self, x):
        owner = self._owner[0]
        self.log.append({"training": any(m.training for m in owner.modules()),
                         "grad_enabled": torch.is_grad_enabled(), "input_requires_grad": x.requires_grad,
                         "params_require_grad": any(p.requires_grad for p in owner.parameters())})
        return x


def test_autoattack_runs_the_model_in_eval_mode_with_input_gradients_and_frozen_parameters(one_thread):
    """During AutoAttack (a cheap custom APGD-CE on 8 images) every forward pass sees an eval-mode model with frozen
    parameters; the gradient steps see gradients enabled on the input; afterwards the model is as it was."""
    torch.manual_seed(0)
    spy = _Spy()
    model = nn.Sequential(spy, nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 10))
    spy._owner.append(model)
    x = torch.rand(8, 3, 8, 8)
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    spy.log.clear()
    model.train()
    model[-1].bias.requires_grad_(False)
    AutoAttack(8 / 255, version="custom", attacks=["apgd-ce"], apgd_budget=(4, 1), batch_size=8).perturb(model, x, y)
    log = spy.log
    assert log, "the model was never called"
    assert not any(e["training"] for e in log), "a forward pass ran in train mode"
    assert not any(e["params_require_grad"] for e in log), "parameters were not frozen"
    grad_calls = [e for e in log if e["grad_enabled"] and e["input_requires_grad"]]
    assert len(grad_calls) >= 4, f"expected APGD's gradient passes (1 + 4 iterations), saw {len(grad_calls)}"
    assert model.training and all(m.training for m in model.modules())
    assert model[1].weight.requires_grad and not model[-1].bias.requires_grad
    assert all(p.grad is None for p in model.parameters())
