"""The comparison chapter: the Pareto front, the seed spread, the checklist verdicts, the results rows, the plan's
budget, and that reusing the paper chapters' models trains nothing when their checkpoints exist."""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from robustlib import audit, results
from robustlib.attacks import AutoAttack
from robustlib.errors import ConfigError
from robustlib.chapters import comparison as ch
from robustlib.methods.advprop import bn_route, dual_batchnorms, dualize
from robustlib.stats import accuracy_ci
from robustlib.training import Trainer
from conftest import tiny_resnet


# ------------------------------------------------------------------------------------------- Pareto front


def test_pareto_front_on_hand_made_points():
    cost = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, float("nan")]
    aa = [10.0, 30.0, 20.0, 30.0, 45.0, 45.0, 99.0]
    # (2, 20) is dominated by (2, 30); (3, 30) by (2, 30); (5, 45) by (4, 45); a missing cost is never on the front
    assert ch.pareto_mask(cost, aa) == [True, True, False, False, True, False, False]
    # identical points do not dominate each other; a single point is its own front
    assert ch.pareto_mask([1, 1], [5, 5]) == [True, True]
    assert ch.pareto_mask([3], [7]) == [True]


def _record(method, offset=0, clean=80.0, aa=40.0, n=1000, cost=4.0, epochs=5, train_s=100.0, checks=None):
    m = {"clean": clean, "pgd20": aa + 5, "pgd100": aa + 3, "gama100": aa + 1, "aa": aa}
    return {"task": ch.Task(method, offset, "full" if not offset else "suite").key, "method": method,
            "offset": offset, "seed": offset, "kind": "full" if not offset else "suite", "n": n, "eval_batch": 1000,
            "metrics": m, "aa_warnings": [], "hardware": "test GPU",
            "train": {"source": "test", "key": "k", "recipe_epochs": 100, "recipe": "r", "model": "ResNet-18",
                      "epochs": epochs, "cost_passes": cost, "total_passes": cost * epochs, "train_s": train_s,
                      "gpu_s": train_s, "processes": 1, "selection": "last epoch"},
            "checks": checks, "eps_curve": [{"defence": method, "eps_255": 8, "accuracy": aa, "clean": clean},
                                            {"defence": method, "eps_255": 128, "accuracy": 0.0, "clean": clean}]
            if not offset else None, "verdict": None}


def test_pareto_points_and_table_follow_the_records():
    recs = {r["task"]: r for r in (_record("Normal", cost=2, aa=0.0, clean=92), _record("FBF", cost=4, aa=40),
                                   _record("NuAT", cost=7, aa=45), _record("PGD-AT", cost=22, aa=44),
                                   _record(ch.FD, cost=5, aa=20))}
    pts = ch.pareto_points(recs).set_index("method")
    assert list(pts.index[pts.front_cost_passes]) == ["Normal", "FBF", "NuAT"]
    tab = ch.pareto_table(pts.reset_index())
    assert tab.iloc[0]["front (cheapest first)"] == "Normal → FBF → NuAT"


def test_reported_points_use_the_derived_pass_counts_and_mark_what_is_not_autoattack():
    rp = ch.reported_points()
    assert rp.loc["PGD-AT", "cost_passes"] == 22 and rp.loc["TRADES", "cost_passes"] == 25
    assert rp.loc["NuAT", "cost_passes"] == 7 and rp.loc["NuAT-WA", "accuracy"] == 50.75
    assert rp.loc["ABNN", "metric"] == "pgd" and "NOT AutoAttack" in rp.loc["ABNN", "note"]
    assert not rp.loc["AdvProp", "plotted"] and not rp.loc[ch.FD, "plotted"]


def test_paper_numbers_come_from_each_papers_yaml():
    nu, _ = ch.paper_numbers("NuAT-WA")
    assert nu["aa"] == 50.75 and nu["pgd100"] is None
    fd, src = ch.paper_numbers(ch.FD)
    assert fd["clean"] == pytest.approx(100 - 9.02) and fd["aa"] is None and "100 − clean error" in src
    assert all(v is None for v in ch.paper_numbers("AdvProp")[0].values())


# ---------------------------------------------------------------------------------------------- seed spread


def test_spread_is_the_absolute_seed_difference_beside_the_interval_width():
    a = _record("FBF", 0, clean=80.0, aa=40.0, train_s=100.0)
    b = _record("FBF", 1, clean=83.0, aa=39.0, train_s=110.0)
    c = _record("Normal", 0)            # one seed only: not in the spread
    sp = ch.spread({r["task"]: r for r in (a, b, c)})
    assert set(sp.method) == {"FBF"}
    row = sp.set_index("metric").loc["clean"]
    assert row.abs_diff == pytest.approx(3.0) and row["diff"] == pytest.approx(3.0)
    lo_a, hi_a = accuracy_ci(80.0, 1000)
    lo_b, hi_b = accuracy_ci(83.0, 1000)
    assert row.ci_width == pytest.approx(((hi_a - lo_a) + (hi_b - lo_b)) / 2)
    assert row.ratio == pytest.approx(3.0 / row.ci_width)
    assert row.diff_lo < 3.0 < row.diff_hi and not row.beyond_sampling  # 3 points on 1 000 images: within noise
    assert sp.set_index("metric").loc["train_s", "abs_diff"] == pytest.approx(10.0)  # relative, in %
    big = ch.spread({r["task"]: r for r in (a, _record("FBF", 1, clean=95.0, aa=40.0))})
    assert big.set_index("metric").loc["clean", "beyond_sampling"]
    summ = ch.spread_summary(sp)
    assert summ.loc["clean", "max |Δ|"] == pytest.approx(3.0) and summ.loc["clean", "beyond sampling noise"] == \
        "0 of 1"


# ------------------------------------------------------------------------------------------ checklist verdict


def test_verdict_names_each_failed_check_in_plain_words():
    ok = [audit.Check("A", c, True, "fine") for c in audit.MEANING]
    bad = [audit.Check("B", "accuracy → 0 as ε grows", False, "PGD-50 accuracy 37.0 % at ε = 128/255"),
           audit.Check("B", "black-box never beats white-box", False, "Square 10.0 % vs white-box 30.0 %"),
           audit.Check("B", "more steps and restarts never help", True, "fine"),
           audit.Check("B", "no AutoAttack warnings", None, "not run")]
    assert "passes all 4 checks" in audit.verdict("A", ok + bad)
    v = audit.verdict("B", ok + bad)
    assert v.startswith("B FAILS 2 of 3 checks") and "37.0 %" in v and "Square 10.0 %" in v
    t = audit.verdicts(ok + bad)
    assert t.loc["B", "failed"] == 2 and t.loc["A", "failed"] == 0
    assert audit.from_row(bad[0].row()) == bad[0]
    recs = {"x": _record("FBF", checks=[c.row() for c in ok]), "y": _record("ABNN", checks=[c.row() for c in bad])}
    for c in recs["x"]["checks"]:
        c["defence"] = "FBF"
    for c in recs["y"]["checks"]:
        c["defence"] = "ABNN"
    assert ch.flagged(recs) == ["ABNN"]
    tab, details, verdicts = ch.checklist_tables(recs)
    assert list(tab.index) == ["FBF", "ABNN"] and tab.loc["ABNN", "accuracy → 0 as ε grows"] == "FAIL"


def test_abnn_is_scored_as_crafted_with_autoattack_at_batch_size_one_and_its_row_says_so(tmp_path):
    """The suite on a batch-global ABNN: PGD/GAMA scored in the batch they were crafted in, AutoAttack on the
    batch-size-1 function, every metric also scored one image at a time; the row and the notes say so."""
    from robustlib.evaluation import evaluate
    from test_abnn import _labelled, tiny_abnn
    cfg = ch.config("smoke", 0, "cpu", None, str(tmp_path))
    net = tiny_abnn().eval()
    x, y = _labelled(net, 16)
    res = evaluate(net, (x, y), ch.suite(cfg, 16), batch_size=16, device="cpu", progress=False)
    assert res.meta["batch_dependent"] and res.meta["scoring"]["aa"].startswith("batch size 1")
    assert "crafted" in res.meta["scoring"]["pgd100"]
    assert all(k + "@b1" in res.flags for k in ch.METRICS)
    rec = _record("ABNN")
    rec.update(batch_dependent=True, metrics_b1={"clean": 70.0, "pgd20": 31.0, "pgd100": 30.0, "gama100": 29.0,
                                                 "aa": 25.0})
    row = ch.add_row(cfg, ch.report(cfg), rec)
    assert "AutoAttack attacks and scores the batch-size-1 function" in row["note"]
    assert "pgd100 30.0 %" in row["note"] and row["metrics_b1"]["aa"] == 25.0 and row["batch_dependent"]
    plain = ch.add_row(cfg, ch.report(cfg), {**_record("Normal"), "batch_dependent": False, "metrics_b1": None})
    assert "batch-size-1" not in plain["note"]
    notes = " ".join(cfg.notes)
    assert "AutoAttack cannot be" in notes and "attacked and audited at its chapter's evaluation batch" not in notes


class _Probabilities(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).softmax(1)


def test_autoattack_warnings_are_collected_over_batches_and_fail_the_check(standard_model, synthetic):
    data = synthetic[1].head(40)
    aa = AutoAttack(8 / 255, version="custom", attacks=["apgd-ce"], apgd_budget=(1, 1), batch_size=20)
    from robustlib.evaluation import evaluate
    evaluate(_Probabilities(standard_model).eval(), data, {"aa": aa}, batch_size=20, device="cpu", progress=False)
    assert any("probability distribution" in w for w in aa.warnings)
    assert len(aa.warnings) == len(set(aa.warnings))                 # two batches, each warning kept once
    assert audit.autoattack_flags("probs", aa.warnings).passed is False
    sq = AutoAttack(8 / 255, version="custom", attacks=["square"], square_queries=7)
    assert sq._adversary(standard_model, torch.device("cpu")).square.n_queries == 7
    with pytest.raises(ConfigError, match="standard version keeps its budgets"):
        AutoAttack(8 / 255, square_queries=7)


def test_bn_routed_model_runs_every_dual_bn_on_its_route():
    torch.manual_seed(0)
    model = dualize(tiny_resnet()).eval()
    for m in dual_batchnorms(model):
        m.aux.running_mean.add_(0.5)
    x = torch.rand(4, 3, 32, 32)
    with bn_route(model, "aux"):
        want_aux = model(x)
    assert torch.equal(ch.BNRouted(model, "aux")(x), want_aux)
    assert torch.equal(ch.BNRouted(model, "main")(x), model(x))
    assert not torch.allclose(want_aux, model(x))
    assert all(m.route == "main" for m in dual_batchnorms(model))  # restored after every forward


# --------------------------------------------------------------------------------------------- the schema


def test_gathered_rows_follow_the_schema_with_every_method_and_metric(tmp_path):
    cfg = ch.config("smoke", 0, "cpu", None, str(tmp_path))
    recs = {}
    for m in ch.METHODS:
        r = _record(m, 0, checks=[audit.Check(m, c, True, "ok").row() for c in audit.MEANING])
        recs[r["task"]] = r
    for m in ch.SPREAD_ROWS:
        r = _record(m, 1, clean=70.0)
        recs[r["task"]] = r
    rep = ch.report(cfg)
    ch.add_rows(cfg, rep, recs)
    doc = results.load(rep.write())
    main = [r for r in doc["rows"] if r["table"] == ch.TABLE]
    assert [r["method"] for r in main] == list(ch.METHODS)
    for r in main:
        assert set(r["metrics"]) == set(ch.METRICS) and all(r["metrics"][k] is not None for k in ch.METRICS)
        assert r["cost_passes"] is not None and r["epochs"] is not None and r["train_s"] is not None
        assert r["gpu_s"] is not None and r["hardware"] and len(r["checks"]) == 4 and r["verdict"] is None
    assert {r["method"] for r in doc["rows"] if r["table"] == f"{ch.TABLE}_seed1"} == set(ch.SPREAD_ROWS)
    spread = {r["method"]: r for r in doc["rows"] if r["table"] == "spread"}
    assert spread["Normal"]["metrics"]["clean"] == pytest.approx(10.0)
    nuat = next(r for r in main if r["method"] == "NuAT")
    assert nuat["paper"]["aa"] == 49.24 and nuat["paper"]["pgd100"] is None


def test_the_quick_plan_fits_ten_minutes_per_notebook_and_covers_every_row(tmp_path):
    cfg = ch.config("smoke", 0, "cpu", None, str(tmp_path))
    tasks = cfg.tasks()
    assert {t.method for t in tasks if t.offset == 0 and t.kind == "full"} == set(ch.METHODS)
    assert {t.method for t in tasks if t.offset == 1} == set(ch.SPREAD_ROWS)
    assert len(tasks) == len(set(tasks))
    minutes = ch.part_minutes(cfg)["est. total min"]
    assert (minutes <= 9.5).all(), minutes
    assert set(minutes.index) == {nb + ".ipynb" for nb in ch.NOTEBOOKS.values()}


# ----------------------------------------------------------------------------------- reuse and the cache


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_root):
    """A smoke run folder in which the NuAT chapter's Normal run and this chapter's FD run exist."""
    out = tmp_path_factory.mktemp("comparison-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ROBUSTLIB_CHECKPOINTS", raising=False)
        cfg = ch.config("smoke", 0, "cpu", str(data_root), str(out))
        for m in ("Normal", ch.FD):
            ch.load(cfg, m, 0, progress=False)
    return out, data_root


def _fresh(run_dir):
    out, data_root = run_dir
    return ch.config("smoke", 0, "cpu", str(data_root), str(out))


def test_reuse_trains_nothing_when_the_checkpoints_exist(run_dir, monkeypatch):
    monkeypatch.delenv("ROBUSTLIB_CHECKPOINTS", raising=False)
    first = _fresh(run_dir)
    before = {m: ch.load(first, m, 0, progress=False) for m in ("Normal", ch.FD)}

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(Trainer, "_run_epoch", no_training)
    cfg = _fresh(run_dir)
    for m in ("Normal", ch.FD):
        got = ch.load(cfg, m, 0, progress=False)
        assert got.checkpoint == before[m].checkpoint and got.info["epochs"] == before[m].info["epochs"] == 1
        assert got.info["train_s"] == before[m].info["train_s"] > 0
        for p, q in zip(got.model.parameters(), before[m].model.parameters()):
            assert torch.equal(p.cpu(), q.cpu())
    assert cfg._loaded[("Normal", 0)].info["source"].startswith("NuAT chapter")
    assert cfg._loaded[("Normal", 0)].info["cost_passes"] == 2.0
    assert cfg._loaded[(ch.FD, 0)].info["cost_passes"] == 5.0   # FD: 5N per sample, measured


def test_evaluations_are_cached_and_invalidated_by_a_new_checkpoint(run_dir, monkeypatch):
    monkeypatch.delenv("ROBUSTLIB_CHECKPOINTS", raising=False)
    cfg = _fresh(run_dir)
    task = ch.Task(ch.FD, 0, "full")
    rec = ch.evaluate_task(cfg, task, log=lambda s: None, progress=False)
    assert set(rec["metrics"]) == set(ch.METRICS) and len(rec["checks"]) == 4 and rec["verdict"]
    assert [c["check"] for c in rec["checks"]] == list(audit.MEANING)
    assert rec["eps_curve"][-1]["eps_255"] == 128

    def no_attack(*a, **k):
        raise AssertionError("a cached evaluation was recomputed")
    monkeypatch.setattr(ch, "evaluate", no_attack)
    again = ch.evaluate_task(_fresh(run_dir), task, log=lambda s: None, progress=False)
    assert again["metrics"] == rec["metrics"] and again["checks"] == rec["checks"]
    ckpt = Path(rec["checkpoint"][0])
    os.utime(ckpt, ns=(time.time_ns(), time.time_ns() + 10**9))    # the model file changed: evaluate again
    assert ch.load_record(_fresh(run_dir), task) is None
    other = ch.config("smoke", 0, "cpu", str(run_dir[1]), str(run_dir[0]))
    other.restarts += 1                                              # other settings: another evaluation
    assert other.eval_fingerprint != cfg.eval_fingerprint
