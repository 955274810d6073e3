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
