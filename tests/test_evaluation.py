"""Evaluation: per-image flags, worst case, confidence intervals, JSON; statistics helpers."""
from __future__ import annotations

import json

import pytest
import torch

import robustlib as rl
from robustlib.stats import difference_to_reference, mean_sd, newcombe_difference, wilson_interval


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(40.38, abs=0.01) and hi == pytest.approx(59.62, abs=0.01)
    lo, hi = wilson_interval(0, 1000)
    assert lo == pytest.approx(0, abs=1e-9) and hi == pytest.approx(0.383, abs=0.01)


def test_difference_to_reference_shifts_our_interval():
    d = difference_to_reference(50.0, 100, 45.0)
    assert d["diff"] == pytest.approx(5.0)
    assert d["diff_lo"] == pytest.approx(40.38 - 45, abs=0.01)
    assert difference_to_reference(50.0, 100, None)["diff"] is None


def test_newcombe_and_mean_sd():
    d, lo, hi = newcombe_difference(60, 1000, 50, 1000)
    assert d == pytest.approx(10) and lo < 10 < hi and hi - lo < 10
    assert mean_sd([1, 2, 3]) == (2.0, 1.0, 3)


def test_evaluate_flags_worst_case_and_json(standard_model, synthetic):
    te = synthetic[1]
    res = rl.evaluate(standard_model, te, {"fgsm": rl.FGSM(8 / 255),
                                           "pgd": rl.PGD(8 / 255, 2 / 255, 10, record={"pgd5": 5, "pgd10": 10})},
                      n=200, batch_size=64, device="cpu", progress=False)
    f = res.flags
    assert list(f.columns) == ["clean", "fgsm", "pgd5", "pgd10", "worst"] and len(f) == 200
    assert (f["worst"] == f[["clean", "fgsm", "pgd5", "pgd10"]].all(axis=1)).all()
    # a robust flag implies a correct clean prediction
    assert not (f["pgd10"] & ~f["clean"]).any()
    t = res.table()
    row = t.set_index("metric").loc["fgsm"]
    assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
    json.dumps(res.to_dict())


def test_evaluate_refuses_more_images_than_exist(standard_model, synthetic):
    with pytest.raises(rl.NotEnoughDataError, match="holds only 400"):
        rl.evaluate(standard_model, synthetic[1], n=401, device="cpu", progress=False)


def test_evaluate_accepts_float_tensors_without_quantising(standard_model):
    x = torch.rand(10, 3, 16, 16)
    y = torch.zeros(10, dtype=torch.long)
    res = rl.evaluate(standard_model, (x, y), device="cpu", progress=False)
    pred = standard_model(x).argmax(1)
    assert res.flags["clean"].tolist() == (pred == 0).tolist()


def test_single_recorded_snapshot_keeps_its_key(standard_model, synthetic):
    """PGD(record={"pgd100": ...}) alone used to come back renamed to its mapping key ("pgd"), which left the WRN
    table's PGD-100 column empty and made the steps audit raise KeyError for one step count."""
    te = synthetic[1]
    res = rl.evaluate(standard_model, te, {"pgd": rl.PGD(8 / 255, 2 / 255, 3, record={"pgd3": 3}),
                                           "fgsm": rl.FGSM(8 / 255)},
                      n=64, batch_size=64, device="cpu", progress=False)
    assert list(res.flags.columns) == ["clean", "pgd3", "fgsm", "worst"]


def test_steps_audit_with_one_step_count(standard_model, synthetic):
    from robustlib import audit
    check = audit.steps_and_restarts("m", standard_model, synthetic[1].head(32), steps=(3,), restarts=2,
                                     device="cpu", batch_size=32)
    assert set(check.numbers) == {"pgd3", "restarts"}


# ----------------------------------------------------------------------------- batch-dependent models (issue 13)


class _BatchCentred(torch.nn.Module):
    """A toy batch-dependent model: logits minus three times the batch's mean logits (alone: −2 × the logits)."""

    batch_dependent = True

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        z = self.net(x)
        return z - 3 * z.mean(0, keepdim=True)


def test_batch_independent_model_gets_no_extra_columns_and_same_values(standard_model, synthetic):
    te = synthetic[1]
    atk = {"fgsm": rl.FGSM(8 / 255), "pgd": rl.PGD(8 / 255, 2 / 255, 3, start=None, record={"pgd1": 1, "pgd3": 3})}
    res = rl.evaluate(standard_model, te, atk, n=64, batch_size=32, device="cpu", progress=False)
    assert list(res.flags.columns) == ["clean", "fgsm", "pgd1", "pgd3", "worst"]
    assert set(res.meta) == {"dataset", "split"}
    x, y = te.images()[:32], te.y[:32]
    x3 = rl.PGD(8 / 255, 2 / 255, 3, start=None).perturb(standard_model, x, y)
    expected = (rl.attacks.predict(standard_model, x) == y) & (rl.attacks.predict(standard_model, x3) == y)
    assert res.flags["pgd3"][:32].tolist() == expected.tolist()


def test_any_declared_batch_dependent_model_gets_batch_size_one_columns(standard_model, synthetic):
    """A model without a batch_size_one() of its own is classified one image at a time."""
    from robustlib.evaluation import OneAtATime, batch_dependent, batch_size_one
    assert not batch_dependent(standard_model) and batch_size_one(standard_model) is standard_model
    model = _BatchCentred(standard_model).eval()
    assert batch_dependent(model) and batch_dependent(torch.nn.Sequential(model))
    assert isinstance(batch_size_one(model), OneAtATime) and not batch_dependent(batch_size_one(model))
    te = synthetic[1]
    x, y = te.images()[:40], te.y[:40]
    res = rl.evaluate(model, (x, y), {"fgsm": rl.FGSM(8 / 255)}, batch_size=20, device="cpu", progress=False)
    assert list(res.flags.columns) == ["clean", "fgsm", "worst", "clean@b1", "fgsm@b1", "worst@b1"]
    assert res.meta["batch_dependent"] is True and "alone" in res.meta["scoring"]["fgsm@b1"]
    with torch.no_grad():
        alone = lambda imgs: torch.cat([model(imgs[i:i + 1]) for i in range(len(imgs))]).argmax(1)  # noqa: E731
        for i in (0, 20):
            xb, yb = x[i:i + 20], y[i:i + 20]
            x_adv = rl.FGSM(8 / 255).perturb(model, xb, yb)           # crafted on this batch
            as_crafted = (model(xb).argmax(1) == yb) & (model(x_adv).argmax(1) == yb)
            one_by_one = (alone(xb) == yb) & (alone(x_adv) == yb)
            assert res.flags["fgsm"][i:i + 20].tolist() == as_crafted.tolist()
            assert res.flags["fgsm@b1"][i:i + 20].tolist() == one_by_one.tolist()
    assert res.flags["clean"].tolist() != res.flags["clean@b1"].tolist()   # the toy really depends on the batch
