"""The Trainer: cost meter, weight averaging, schedules, checkpoints/resume, NaN handling, selection."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import robustlib as rl
from robustlib.cost import CostMeter
from robustlib.ema import EMA
from robustlib.methods import PGDAT, Standard, fbf
from robustlib.schedules import Cyclic, Piecewise, build_schedule, triangular
from conftest import tiny_resnet

EPS = 8 / 255


def _cfg(**kw):
    base = dict(epochs=2, batch_size=32, augment=None, schedule={"name": "constant", "lr": 0.05})
    base.update(kw)
    return rl.TrainConfig(**base)


@pytest.fixture(scope="module")
def small():
    return rl.load_dataset("synthetic", "train", n=256)


# ----------------------------------------------------------------------------------------------- cost meter

@pytest.mark.parametrize("method,expected", [
    (Standard(), 2), (fbf(EPS), 4), (PGDAT(EPS, 2 / 255, 5), 12), (PGDAT(EPS, 2 / 255, 10), 22)])
def test_cost_meter_counts_2N_and_2N_t_plus_1(method, expected, small):
    res = rl.train(tiny_resnet(), method, small, _cfg(epochs=1), device="cpu", progress_bar=False)
    assert res.cost["total"] == pytest.approx(expected)
    assert res.cost["model.forward"] == res.cost["model.backward"] == pytest.approx(expected / 2)


def test_cost_meter_separates_networks_and_ignores_inactive_passes():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    meter = CostMeter().watch(a, "target").watch(b, "substitute")
    x = torch.rand(5, 3)
    a(x).sum().backward()  # not active: not charged
    with meter.active(samples=5):
        with torch.no_grad():
            b(x)
        a(x).sum().backward()
    assert meter.per_sample() == {"substitute.backward": 0.0, "substitute.forward": 1.0,
                                  "target.backward": 1.0, "target.forward": 1.0, "total": 3.0}


def test_cost_meter_counts_input_only_backward():
    net = nn.Linear(3, 2)
    for p in net.parameters():
        p.requires_grad_(False)
    meter = CostMeter().watch(net)
    x = torch.rand(4, 3, requires_grad=True)
    with meter.active(samples=4):
        torch.autograd.grad(net(x).sum(), x)
    assert meter.passes_per_sample == 2


# ---------------------------------------------------------------------------------------------------- EMA

def test_ema_matches_hand_computation_including_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    tau = 0.9
    ema = EMA(model, tau)
    expected = {k: v.clone().float() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        model.train()
        model(torch.randn(8, 3)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
        ema.update(model)
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                expected[k] = tau * expected[k] + (1 - tau) * v
            else:
                expected[k] = v.clone()
    for k, v in ema.model.state_dict().items():
        assert torch.allclose(v.float(), expected[k].float(), atol=1e-6), k
    assert ema.model.state_dict()["1.num_batches_tracked"] == 3


# ----------------------------------------------------------------------------------------------- schedules

def test_cyclic_schedule_matches_torch_cyclic_lr_including_momentum():
    iters, up, down = 10, 4, 6
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    ref = torch.optim.lr_scheduler.CyclicLR(opt, base_lr=0.0, max_lr=0.1, step_size_up=up * iters,
                                            step_size_down=down * iters)
    ours = Cyclic(0.1, up, down)
    for step in range(15 * iters):
        lr, mom = ours(step / iters)
        assert lr == pytest.approx(opt.param_groups[0]["lr"], abs=1e-12)
        assert mom == pytest.approx(opt.param_groups[0]["momentum"], abs=1e-12)
        opt.step()
        ref.step()


def test_cyclic_step_freeze_and_drops():
    s = Cyclic(0.1, up=40, down=50, freeze_at=80, drops={86: 0.1, 91: 0.1})
    assert s(40)[0] == pytest.approx(0.1) and s(40)[1] == pytest.approx(0.8)
    assert s(80)[0] == pytest.approx(0.02)
    assert s(85.5)[0] == pytest.approx(0.02)
    assert s(86)[0] == pytest.approx(0.002)
    assert s(95)[0] == pytest.approx(0.0002)
    assert s(95)[1] == pytest.approx(0.9 - 0.1 * 0.2)


def test_piecewise_and_triangular():
    s = Piecewise(0.1, [60, 120, 160], 0.2)
    assert [round(s(e)[0], 6) for e in (0, 59.9, 60, 120, 161)] == [0.1, 0.1, 0.02, 0.004, 0.0008]
    t = triangular(0.2, 15)
    assert t(0) == pytest.approx((0.0, 0.9)) and t(7.5) == pytest.approx((0.2, 0.8))
    assert t(15)[0] == pytest.approx(0, abs=1e-12)
    assert triangular(0.2, 15, peak=0.4, cycle_momentum=False)(6) == (pytest.approx(0.2), None)


def test_unknown_schedule_lists_valid_names():
    with pytest.raises(rl.UnknownNameError, match="Valid schedule names: constant, cosine, cyclic, piecewise"):
        build_schedule({"name": "onecycle"})
    with pytest.raises(rl.ConfigError, match="bad parameters for the 'cyclic' schedule"):
        build_schedule({"name": "cyclic", "max_lr": 0.1})


def test_trainer_applies_the_schedule_every_iteration(small):
    cfg = _cfg(epochs=2, schedule={"name": "cyclic", "max_lr": 0.1, "up": 1, "down": 1})
    res = rl.train(tiny_resnet(), Standard(), small, cfg, device="cpu", progress_bar=False)
    h = res.history
    nb = 256 // 32
    assert h["lr"].tolist() == pytest.approx([(nb - 1) / nb * 0.1, 1 / nb * 0.1])
    assert h["momentum"].iloc[0] == pytest.approx(0.9 - 0.1 * (nb - 1) / nb)


# ------------------------------------------------------------------------------------------ checkpoints

class Interrupt(Exception):
    pass


def test_resume_after_interruption_is_bitwise_identical(small, tmp_path):
    cfg = _cfg(epochs=3, ema=(0.9,), augment=rl.Augment())

    torch.manual_seed(0)
    ref = rl.train(tiny_resnet(), PGDAT(EPS, 2 / 255, 2), small, cfg, device="cpu", progress_bar=False,
                   out_dir=tmp_path / "ref")
    torch.manual_seed(0)
    with pytest.raises(Interrupt):
        rl.train(tiny_resnet(), _Crashing(8 + 3), small, cfg, device="cpu", progress_bar=False,
                 out_dir=tmp_path / "run")  # crashes in the middle of epoch 2
    state = rl.utils.load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["epoch"] == 1 and not state["finished"]
    torch.manual_seed(123)  # a different process would not share the RNG state
    resumed = rl.train(tiny_resnet(), _Crashing(None), small, cfg, device="cpu", progress_bar=False,
                       out_dir=tmp_path / "run")
    for (k, a), b in zip(ref.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), k
    for a, b in zip(ref.emas["ema0.9"].state_dict().values(), resumed.emas["ema0.9"].state_dict().values()):
        assert torch.equal(a, b)
    assert resumed.epochs == 3 and resumed.cost == ref.cost
    assert resumed.history["train_loss"].tolist() == ref.history["train_loss"].tolist()


class _Crashing(PGDAT):
    def __init__(self, stop_at):
        super().__init__(EPS, 2 / 255, 2)
        self._stop_at = stop_at

    def loss(self, model, x, y, step):
        if self._stop_at is not None and step.global_step == self._stop_at:
            raise Interrupt
        return super().loss(model, x, y, step)


def test_rerun_of_a_finished_configuration_trains_nothing(small, tmp_path):
    cfg = _cfg(epochs=1)
    first = rl.train(tiny_resnet(), Standard(), small, cfg, device="cpu", progress_bar=False, out_dir=tmp_path)
    t = rl.Trainer(tiny_resnet(), Standard(), small, cfg, device="cpu", progress_bar=False, out_dir=tmp_path)
    assert t.finished
    again = t.fit()
    assert again.train_seconds == first.train_seconds
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(),
                                                 again.model.state_dict().values()))


def test_different_configuration_in_the_same_folder_is_refused(small, tmp_path):
    rl.train(tiny_resnet(), Standard(), small, _cfg(epochs=1), device="cpu", progress_bar=False, out_dir=tmp_path)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(rl.CheckpointMismatchError, match="different configuration.*Nothing was overwritten"):
        rl.Trainer(tiny_resnet(), Standard(), small, _cfg(epochs=1, weight_decay=0.0), device="cpu",
                   out_dir=tmp_path)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_corrupt_checkpoint_is_named(small, tmp_path):
    rl.train(tiny_resnet(), Standard(), small, _cfg(epochs=1), device="cpu", progress_bar=False, out_dir=tmp_path)
    raw = (tmp_path / "last.pt").read_bytes()
    (tmp_path / "last.pt").write_bytes(raw[:100])
    with pytest.raises(rl.CorruptFileError, match="last.pt cannot be read"):
        rl.Trainer(tiny_resnet(), Standard(), small, _cfg(epochs=1), device="cpu", out_dir=tmp_path)


class ExplodeAt(Standard):
    def __init__(self, epoch):
        super().__init__()
        self._epoch = epoch

    def loss(self, model, x, y, step):
        loss, logs = super().loss(model, x, y, step)
        return (loss * float("nan") if step.epoch == self._epoch else loss), logs


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(small, tmp_path):
    cfg = _cfg(epochs=3, nan_check_every=2)
    with pytest.raises(rl.NonFiniteLossError, match=r"epoch 2.*last good checkpoint is kept.*after epoch 1"):
        rl.train(tiny_resnet(), ExplodeAt(1), small, cfg, device="cpu", progress_bar=False, out_dir=tmp_path)
    state = rl.utils.load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.dtype.is_floating_point)


def test_selector_keeps_the_best_epoch_on_the_holdout(small, tmp_path):
    train, val = rl.holdout_split(small, per_class=5)
    sel = rl.Selector(val, rl.ifgsm(EPS, 3))
    res = rl.train(tiny_resnet(), Standard(), train, _cfg(epochs=3, ema=(0.5,)), device="cpu",
                   progress_bar=False, out_dir=tmp_path, selector=sel)
    h = res.history
    assert {"val_clean", "val_robust", "ema0.5_val_robust"} <= set(h.columns)
    best = res.best["model"]
    assert best["score"] == h["val_robust"].max() and best["epoch"] == int(h["val_robust"].idxmax()) + 1
    m = res.load_best("model")
    acc = rl.evaluate(m, val, {"robust": rl.ifgsm(EPS, 3)}, device="cpu", progress=False).accuracies()["robust"]
    assert acc == pytest.approx(best["score"])


def test_adversarial_training_beats_standard_training_on_synthetic_data(standard_model, robust_model, synthetic):
    te = synthetic[1]
    eps = 16 / 255
    atk = {"pgd": rl.PGD(eps, 4 / 255, 10)}
    std = rl.evaluate(standard_model, te, atk, device="cpu", progress=False).accuracies()
    adv = rl.evaluate(robust_model, te, atk, device="cpu", progress=False).accuracies()
    assert adv["pgd"] > std["pgd"] + 20, (std, adv)
    assert adv["clean"] > 90


def test_unknown_method_and_bad_config():
    with pytest.raises(rl.UnknownNameError, match="Valid method names: .*pgd_at.*standard"):
        rl.build_method("trades2")
    with pytest.raises(rl.ConfigError, match="valid: auto, bf16, off"):
        rl.TrainConfig(epochs=1, amp="fp16")
    with pytest.raises(rl.ConfigError, match="unknown device 'gpu0'"):
        rl.utils.resolve_device("gpu0")


def test_cpu_precision_is_decided_by_capability_and_recorded(small, monkeypatch):
    """bf16 autocast + channels_last on a CPU with native bf16 (AMX/AVX512-BF16), fp32 elsewhere; recorded."""
    from robustlib import utils
    for native, amp in (("1", "bf16"), ("0", "fp32")):
        monkeypatch.setenv("ROBUSTLIB_CPU_BF16", native)
        tr = rl.Trainer(tiny_resnet(), Standard(), small, _cfg(epochs=1, max_batches=1), device="cpu",
                        progress_bar=False)
        assert utils.cpu_bf16_native() is (native == "1")
        assert tr.precision == {"amp": amp, "channels_last": native == "1"}
        res = tr.fit()
        assert res.hyperparameters["resolved"]["amp"] == amp and res.history["precision"].tolist() == [amp]
    monkeypatch.setenv("ROBUSTLIB_CPU_BF16", "1")
    off = rl.Trainer(tiny_resnet(), Standard(), small, _cfg(epochs=1, amp="off", channels_last=False), device="cpu",
                     progress_bar=False)
    assert off.precision == {"amp": "fp32", "channels_last": False}
