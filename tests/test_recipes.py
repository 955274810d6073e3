"""The NuAT chapter's baseline recipes as they are built (learning-rate, momentum and λ values at the boundary
epochs, read from the RunSpecs the chapter builds from its RECIPES table), the BatchNorm mode each training attack runs in (a spy BN that
records its mode on every forward), and NuAT's single-step numerics restated by hand from the paper facts
(nuat.md §2): Bernoulli start, one signed step of ε, projection, train-mode reference, training loss."""
from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import robustlib as rl
from robustlib.attacks import FGSM, PGD
from robustlib.chapters import nuat as ch
from robustlib.methods import PGDAT
from robustlib.methods.nuat import NuAT
from robustlib.schedules import triangular

EPS, ALPHA = 8 / 255, 4 / 255


def _step(epoch=0, iteration=0, global_step=0, nb=100, model=None):
    trainer = types.SimpleNamespace(batches_per_epoch=nb, emas={}, model=model, meter=rl.CostMeter())
    return rl.methods.Step(epoch, iteration, global_step, trainer)


@pytest.fixture(scope="module")
def paper_runs(tmp_path_factory):
    return ch.config("paper", 0, "cpu", None, str(tmp_path_factory.mktemp("paper"))).specs


def _lr(run, e):
    return run.config.schedule(e)[0]


def _lam(method, e):
    return method.lam(_step(epoch=e))


# ------------------------------------------------------------------------------------------- schedules (CIFAR-10)


def test_gat_drops_the_lr_and_multiplies_lambda_after_epochs_70_and_85(paper_runs):
    """GAT_cifar10.py (0-based loop) acts at the *end* of epochs 70 and 85: new values from epochs 71 and 86."""
    run = paper_runs["cifar10/GAT"]
    gat = run.make_method()
    assert [_lr(run, e) for e in (70, 71, 85, 86)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    assert [_lam(gat, e) for e in (70, 71, 85, 86)] == pytest.approx([10, 10, 10, 40])
    assert gat.alternate and run.extra["select"] == "ifgsm7"


def test_trades_and_awp_drops_follow_their_one_based_scripts(paper_runs):
    """``if epoch >= 75`` with epochs counted from 1 is 0-based epoch 74 (TRADES 74/89/99, AWP 99/149)."""
    trades = paper_runs["cifar10/TRADES"]
    assert [_lr(trades, e) for e in (73, 74, 88, 89, 98, 99)] == pytest.approx(
        [0.1, 0.01, 0.01, 0.001, 0.001, 0.0001])
    awp = paper_runs["cifar10/AWP"]
    assert [_lr(awp, e) for e in (98, 99, 148, 149)] == pytest.approx([0.1, 0.01, 0.01, 0.001])


@pytest.mark.parametrize("key,epochs,batch,wd,select", [
    ("cifar10/GAT", 100, 64, 5e-4, "ifgsm7"), ("cifar10/TRADES", 80, 128, 2e-4, "ifgsm7"),
    ("cifar10/AWP", 200, 128, 5e-4, "ifgsm7"), ("cifar10/PGD-AT", 200, 128, 5e-4, "ifgsm7"),
    ("cifar10/FBF", 15, 128, 5e-4, "ifgsm7"), ("cifar10/NuAT", 100, 64, 5e-4, "ifgsm7"),
    ("cifar10/Normal", 100, 64, 5e-4, "clean"), ("mnist/GAT", 50, 64, 5e-4, "ifgsm40"),
    ("imagenet100/GAT", 120, 64, 1e-4, "pgd20"), ("wrn/GAT", 85, 64, 5e-4, "ifgsm7"), ("wrn/TRADES", 110, 128, 5e-4,
                                                                                      "ifgsm7"),
])
def test_recipe_epochs_batches_and_selection_as_built(paper_runs, key, epochs, batch, wd, select):
    """The paper profile trains every recipe as its script does: epochs, batch, weight decay, momentum 0.9 and the
    selection rule, read from the RunSpec (the fingerprint's input), not from the table alone."""
    sp = paper_runs[key]
    c = sp.config
    assert (c.epochs, c.batch_size, c.weight_decay, c.momentum) == (epochs, batch, wd, 0.9)
    assert sp.extra["select"] == select and sp.selector == ("clean" if select == "clean" else "robust")
    assert c.max_batches is None and sp.extra["paper_epochs"] == epochs


def test_cyclic_recipes_keep_cycliclr_momentum(paper_runs):
    """CyclicLR's default momentum cycling (0.9 at lr 0, 0.8 at the peak) in every cyclic recipe; NuAT's schedule is
    frozen at epoch 80 (momentum 0.88 from then on)."""
    for key in ("cifar10/NuAT", "cifar10/NuAT-WA", "cifar10/FBF", "cifar10/ATF", "wrn/NuAT2", "wrn/NuAT2-WA"):
        s = paper_runs[key].config.schedule
        assert s(0) == pytest.approx((0.0, 0.9)), key
        assert max(s(e / 4)[0] for e in range(4 * paper_runs[key].config.epochs)) == pytest.approx(
            0.2 if key.endswith("FBF") else 0.04 if key.endswith("ATF") else 0.1), key
    assert paper_runs["cifar10/NuAT"].config.schedule(95)[1] == pytest.approx(0.88)


def _awp_active(method, epoch, small_model, x, y):
    trainer = types.SimpleNamespace(model=small_model, meter=rl.CostMeter(), batches_per_epoch=10, emas={})
    method.setup(trainer)
    step = rl.methods.Step(epoch, 0, epoch * 10, trainer)
    _, logs = method.loss(small_model, x, y, step)
    method.post_backward(trainer)
    return bool(logs["awp"])


@pytest.mark.parametrize("source", ["cifar10", "wrn"])
def test_awp_weight_perturbation_switches_on_at_zero_based_epoch_9(source, paper_runs):
    """trades_AWP: ``if epoch >= awp_warmup`` (10) with 1-based epochs ⇒ off at 0-based epoch 8, on at 9."""
    make = paper_runs["cifar10/AWP" if source == "cifar10" else "wrn/AWP"].make_method
    torch.manual_seed(0)
    model = _SpyNet()
    x, y = torch.rand(8, 3, 8, 8), torch.randint(0, 10, (8,))
    m = make()
    m.steps = 1
    assert not _awp_active(m, 8, model, x, y)
    assert _awp_active(m, 9, model, x, y)


def test_wrn_recipes_gat_switches_lambda_with_its_lr_drop_and_awp_is_zero_based(paper_runs):
    spec = paper_runs["wrn/GAT"]
    gat, s, epochs = spec.make_method(), spec.config.schedule, spec.config.epochs
    lr_drops = [e for e in range(1, epochs) if s(e)[0] < s(e - 1)[0] - 1e-12]
    lam_switch = [e for e in range(1, epochs) if _lam(gat, e) != _lam(gat, e - 1)]
    assert len(lr_drops) == 2 and lam_switch == lr_drops[1:], (lr_drops, lam_switch)
    assert _lam(gat, lam_switch[0]) == pytest.approx(4 * _lam(gat, 0))
    awp = paper_runs["wrn/AWP"].config.schedule
    assert [awp(e)[0] for e in (98, 99, 148, 149)] == pytest.approx([0.1, 0.01, 0.01, 0.001])


@pytest.mark.parametrize("rid,epochs,max_lr", [("cifar10/FBF", 15, 0.2), ("cifar10/FGSM-AT", 15, 0.2),
                                               ("cifar10/ATF", 10, 0.04)])
def test_fbf_family_lr_peaks_at_half_and_momentum_cycles_like_cycliclr(paper_runs, rid, epochs, max_lr):
    """Wong et al.'s / Free-AT's CyclicLR (step_size_up = step_size_down = half, default momentum cycling)."""
    s = paper_runs[rid].config.schedule
    assert s(0) == pytest.approx((0.0, 0.9))
    assert s(epochs / 2) == pytest.approx((max_lr, 0.8))
    assert s(epochs) == pytest.approx((0.0, 0.9), abs=1e-12)
    assert s(epochs / 4) == pytest.approx((max_lr / 2, 0.85))
    assert s(0.45 * epochs)[0] < max_lr and s(0.55 * epochs)[0] < max_lr
    wrn = paper_runs["wrn/FBF"].config.schedule
    assert wrn(15) == pytest.approx((0.2, 0.8)) and wrn(30) == pytest.approx((0.0, 0.9), abs=1e-12)


def test_triangular_defaults_are_wongs_cycliclr():
    t = triangular(0.2, 15)
    assert t(7.5) == pytest.approx((0.2, 0.8)) and t(0) == pytest.approx((0.0, 0.9))
    assert t(6)[0] == pytest.approx(0.16)
    assert t(3)[1] == pytest.approx(0.9 - 0.1 * 0.4)
    assert triangular(0.2, 15, cycle_momentum=False)(7.5) == (pytest.approx(0.2), None)
    with pytest.raises(rl.ConfigError, match="peak"):
        triangular(0.2, 15, peak=1.0)


# --------------------------------------------------------------------------------- GAT on MNIST and ImageNet-100


def test_gat_on_mnist_follows_gat_mnist_py(paper_runs):
    """λ = 15; the script's `epoch in [E/4, E/2, 3E/4]` at E = 50 matches only epoch 25: lr ÷5 and λ ×3 from 26;
    the regulariser in every attack iteration; selection by I-FGSM-40."""
    run = paper_runs["mnist/GAT"]
    gat = run.make_method()
    assert [e for e in range(50) if e in [50 / 4, 2 * 50 / 4, 3 * 50 / 4]] == [25]
    assert [_lr(run, e) for e in (0, 12, 13, 25, 26, 37, 38, 49)] == pytest.approx(
        [0.01, 0.01, 0.01, 0.01, 0.002, 0.002, 0.002, 0.002])
    assert [_lam(gat, e) for e in (0, 25, 26, 49)] == pytest.approx([15, 15, 45, 45])
    assert gat.alternate is False and gat.eps == pytest.approx(0.3) and gat.alpha == pytest.approx(0.3)
    assert run.extra["select"] == "ifgsm40"
    sel = ch.selector(run, rl.load_dataset("synthetic", "test", n=8))
    assert sel.attack.steps == 40 and sel.attack.alpha == pytest.approx(0.3 / 40) and sel.attack.start is None
    assert "λ = 15" in run.source and "I-FGSM-40" in run.source


def test_gat_on_imagenet100_follows_its_script(tmp_path):
    run = ch.config("paper", 0, "cpu", None, str(tmp_path)).specs["imagenet100/GAT"]
    gat = run.make_method()
    assert [_lam(gat, e) for e in (0, 89, 90, 119)] == pytest.approx([20, 20, 140, 140])
    assert [run.config.schedule(e)[0] for e in (59, 60, 89, 90)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    assert gat.ref_mode == "eval" and gat.alternate and run.extra["select"] == "pgd20"
    sel = ch.selector(run, rl.load_dataset("synthetic", "test", n=8))
    assert sel.attack.steps == 20 and sel.attack.alpha == pytest.approx(2.5 * EPS / 20)


# ------------------------------------------------------------------------------------------------ BatchNorm spy


class _SpyBN(nn.BatchNorm2d):
    """A BatchNorm that records ``self.training`` on every forward call."""

    def __init__(self, n):
        super().__init__(n)
        self.seen: list[bool] = []

    def forward(self, x):
        self.seen.append(self.training)
        return super().forward(x)


class _SpyNet(nn.Module):
    """conv → spy BN → ReLU → pool → linear; ``calls`` holds (input requires grad, grad enabled, BN training) per
    forward: an attack's forward has an input that requires grad."""

    def __init__(self, k=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = _SpyBN(6)
        self.fc = nn.Linear(6 * 4 * 4, k)
        self.inputs: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.inputs.append((x.requires_grad, torch.is_grad_enabled()))
        h = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(h.flatten(1))

    @property
    def calls(self):
        return [(g, e, t) for (g, e), t in zip(self.inputs, self.bn.seen)]

    def reset(self):
        self.inputs.clear()
        self.bn.seen.clear()


def _attack_modes(model):
    """BN modes of the forwards whose input required grad (the attack's gradient forwards)."""
    return [t for g, _, t in model.calls if g]


@pytest.fixture
def spy():
    torch.manual_seed(0)
    model = _SpyNet()
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,))
    with torch.no_grad():   # some running statistics to see
        model(x)
    model.reset()
    model.train()
    return model, x, y


@pytest.mark.parametrize("make,mode", [
    (lambda: PGD(EPS, 2 / 255, 3), False),
    (lambda: PGD(EPS, 2 / 255, 3, bn_mode="train"), True),
    (lambda: FGSM(EPS, bn_mode="eval"), False),
    (lambda: FGSM(EPS, bn_mode="train"), True),
])
def test_attacks_run_bn_in_the_mode_they_claim_from_a_train_mode_model(spy, make, mode):
    model, x, y = spy
    make().perturb(model, x, y)
    seen = _attack_modes(model)
    assert seen and all(t is mode for t in seen), seen
    assert model.training and model.bn.training, "the model's own mode is put back"


def test_nuat_reference_is_train_mode_and_its_ascent_step_eval_mode(spy):
    model, x, y = spy
    m = NuAT(EPS, ALPHA)
    m.attack(model, x, y, 1.0, _step(global_step=1))
    ref = [t for g, e, t in model.calls if not g and not e]
    assert ref == [True], "one no-grad reference forward with BN batch statistics"
    assert _attack_modes(model) == [False], "one ascent step with BN running statistics"
    assert model.training
    model.reset()
    m.ascent_step(model, x, m.start(x), y, None, 0.0)
    assert _attack_modes(model) == [False]


# the mode each training method's attack runs in, per the code its recipe cites (item: PGD-AT / FBF family crafted
# with model.train() in train_fgsm.py and train_cifar.py; TRADES, AWP, NuAT, GAT with model.eval(); R-MGM our choice)
TRAINING_ATTACK_MODES = {"FBF": True, "FGSM-AT": True, "RFGSM-AT": True, "PGD-AT": True, "TRADES": False,
                         "AWP": False, "NuAT": False, "NuAT-WA": False, "GAT": False, "R-MGM": False}


@pytest.mark.parametrize("label", sorted(TRAINING_ATTACK_MODES))
def test_each_training_method_attacks_in_its_recipes_bn_mode(paper_runs, spy, label):
    model, x, y = spy
    m = paper_runs[f"cifar10/{label}"].make_method()
    if hasattr(m, "steps"):
        m.steps = min(m.steps, 2)
        if hasattr(m, "_attack"):
            m._attack.steps = m.steps
    step = _step(epoch=50, global_step=1, model=model)
    if hasattr(m, "setup"):
        m.setup(step.trainer)
    model.reset()
    m.loss(model, x, y, step)
    seen = _attack_modes(model)
    want = TRAINING_ATTACK_MODES[label]
    assert seen and all(t is want for t in seen), (label, seen)
    training = [t for g, e, t in model.calls if not g and e]
    assert training and all(training), "the training forwards use batch statistics"
    assert model.training


def test_train_mode_training_attack_updates_bn_running_statistics_like_the_reference(spy):
    """In PyTorch a train-mode forward updates the running statistics, as in the cited scripts; bn_stats="restore"
    puts them back after the attack; eval mode never touches them."""
    model, x, y = spy
    before = model.bn.running_mean.clone()
    PGDAT(EPS, 2 / 255, 2)._attack.perturb(model, x, y)
    assert not torch.equal(model.bn.running_mean, before), "the attack's train-mode forwards move the statistics"
    assert int(model.bn.num_batches_tracked) == 1 + 2
    for kw in ({"bn_stats": "restore"}, {"bn_mode": "eval"}):
        saved = model.bn.running_mean.clone()
        PGDAT(EPS, 2 / 255, 2, **kw)._attack.perturb(model, x, y)
        assert torch.equal(model.bn.running_mean, saved), kw
    for p in model.parameters():
        assert p.requires_grad and p.grad is None
    with pytest.raises(rl.ConfigError, match="bn_stats"):
        PGDAT(bn_stats="keep")


# --------------------------------------------------------------------------------- NuAT's numerics, by hand


def _by_hand_attack(model, x, y, lam, use_reg, eps=EPS, alpha=ALPHA):
    """nuat.md §2.3, single step: reference logits from a train-mode forward; X₀ = clip(X + α·sign(0.5 − U)); in eval
    mode one signed step of ε on mean CE + λ·‖f(X₀) − f(X)‖_*/B (CE only on even iterations); then
    Clamp(Δ, −ε, ε) and clip to [0, 1]."""
    model.train()
    with torch.no_grad():
        ref = model(x)
    x0 = torch.clamp(x + alpha * torch.sign(0.5 - torch.rand(x.shape)), 0, 1)
    model.eval()
    x0 = x0.detach().requires_grad_(True)
    out = model(x0)
    cost = F.cross_entropy(out, y)
    if use_reg:
        cost = cost + lam * torch.linalg.svdvals(out - ref).sum() / len(x)
    g, = torch.autograd.grad(cost, x0)
    delta = torch.clamp(x0.detach() + eps * torch.sign(g) - x, -eps, eps)
    model.train()
    return torch.clamp(x + delta, 0, 1)


def _pair(seed=0):
    torch.manual_seed(seed)
    a = _SpyNet()
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,))
    with torch.no_grad():
        a.train()(x)
    return a, copy.deepcopy(a), x, y


@pytest.mark.parametrize("global_step,use_reg", [(1, True), (0, False), (7, True)])
def test_odd_iteration_attack_equals_a_step_on_ce_plus_nuclear_and_even_a_plain_ce_step(global_step, use_reg):
    lam = 3.0
    mine, hand, x, y = _pair()
    torch.manual_seed(1)
    got = NuAT(EPS, ALPHA).attack(mine, x, y, lam, _step(global_step=global_step))
    torch.manual_seed(1)
    want = _by_hand_attack(hand, x, y, lam, use_reg)
    assert torch.allclose(got, want, atol=1e-6)
    torch.manual_seed(1)
    other = _by_hand_attack(copy.deepcopy(_pair()[0]), x, y, lam, not use_reg)
    assert not torch.allclose(got, other, atol=1e-6), "the regulariser changes the step at this λ"
    assert torch.equal(mine.bn.running_mean, hand.bn.running_mean), "the train-mode reference moved them alike"


def test_nuat_training_loss_restates_the_official_numerics(paper_runs):
    """NuAT_cifar10.py at paper epoch 40 (λ = 0.05·40 = 2), an odd iteration: the attack above, then clean and
    adversarial batches forwarded separately in train mode, loss = mean CE(clean) + λ·‖f(X̃) − f(X)‖_*/B."""
    mine, hand, x, y = _pair(3)
    nuat = paper_runs["cifar10/NuAT"].make_method()
    torch.manual_seed(5)
    loss, logs = nuat.loss(mine, x, y, _step(epoch=40, global_step=1))
    torch.manual_seed(5)
    lam = 0.05 * 40
    x_adv = _by_hand_attack(hand, x, y, lam, True)
    clean, adv = hand(x), hand(x_adv)
    want = F.cross_entropy(clean, y) + lam * torch.linalg.svdvals(adv - clean).sum() / len(x)
    assert float(loss.detach()) == pytest.approx(float(want.detach()), abs=1e-6)
    reg = torch.linalg.svdvals((adv - clean).detach()).sum() / len(x)
    assert float(logs["reg"].detach()) == pytest.approx(float(reg), abs=1e-6)
    loss.backward()
    want.backward()
    assert torch.allclose(mine.conv.weight.grad, hand.conv.weight.grad, atol=1e-6)
    assert torch.allclose(mine.bn.running_var, hand.bn.running_var, atol=1e-7)
    assert int(mine.bn.num_batches_tracked) == int(hand.bn.num_batches_tracked) == 1 + 3
