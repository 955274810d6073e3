"""The comparison chapter: its tables (rows, the FD recipe, profiles), the Pareto front, the seed spread, the
checklist verdicts, the results rows and the gather, the plan's budget, that a paper chapter's finished run is
reopened through its public ``trained`` without training, and that every evaluation is cached beside its checkpoint."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import robustlib.experiment as ex
from robustlib import audit, claims, results
from robustlib.attacks import AutoAttack
from robustlib.chapters import comparison as ch
from robustlib.chapters.common import PROFILES as PROFILE_NAMES
from robustlib.errors import ConfigError, UnknownNameError
from robustlib.methods import METHODS as REGISTERED
from robustlib.methods.advprop import bn_route, dual_batchnorms, dualize
from robustlib.models import MODELS
from robustlib.report import Report
from robustlib.stats import accuracy_ci, wilson_interval
from robustlib.training import Trainer, run_fingerprint
from robustlib.utils import derive_seed
from conftest import ROOT, tiny_resnet


# ------------------------------------------------------------------------------------------------ the tables


def test_recipes_name_registered_methods_and_models_and_give_their_source():
    for label, r in ch.RECIPES.items():
        assert r["method"] in REGISTERED.names() and r["model"] in MODELS.names(), label
        assert len(r["source"]) > 40 and r["epochs"] and r["batch"], label
        REGISTERED.build(r["method"], **r["hp"])                   # the hyperparameters are the method's own
    assert {"smoke", "quick", "paper"} <= set(ch.PROFILES) <= set(PROFILE_NAMES) and set(ch.NOTES) == set(ch.PROFILES)
    keys = {k for p in ch.PROFILES.values() for k in p}
    assert all(set(p) == keys for p in ch.PROFILES.values())      # every profile states every value


def test_every_row_comes_from_a_chapter_that_exposes_trained():
    assert list(ch.ROWS) == list(ch.METHODS) and len(ch.METHODS) == 10
    for label, r in ch.ROWS.items():
        if r["chapter"] == ch.PAPER:
            assert label in ch.RECIPES
        else:
            assert callable(ch.CHAPTERS[r["chapter"]].trained), r["chapter"]
    parts = [t for tasks in ch.PARTS.values() for t in tasks]
    assert all(lab in ch.ROWS and kind in ch.KINDS for lab, _, kind in parts)
    assert set(ch.NOTEBOOKS) == {*ch.PARTS, None}
    assert all((ROOT / "notebooks" / f"{nb}.ipynb").exists() for nb in ch.NOTEBOOKS.values())


def test_rows_ask_their_chapter_through_trained_with_its_label_and_seed(tmp_path, monkeypatch):
    """The one interface to a paper chapter: ``trained(settings, label, seed=..., progress=...)`` (plus, in the
    paper profile only, ABNN's ``overrides`` asking for its ResNet-18 target)."""
    calls = []

    class FakeChapter:
        @staticmethod
        def trained(s, label, *, seed=None, progress=True, **kw):
            calls.append((s.profile, label, seed, kw))
            raise RuntimeError("stop")
    for name in ("advprop", "abnn"):
        monkeypatch.setitem(ch.CHAPTERS, name, FakeChapter)
    for profile in ("smoke", "paper"):
        cfg = ch.config(profile, 3, "cpu", None, str(tmp_path))
        for label, offset in (("AdvProp (aux BN)", 1), ("ABNN", 0)):
            with pytest.raises(RuntimeError, match="stop"):
                ch.trained_row(cfg, label, offset, progress=False)
    assert calls == [("smoke", "AdvProp", 4, {}), ("smoke", "ABNN", 3, {}), ("paper", "AdvProp", 4, {}),
                     ("paper", "ABNN", 3, {"overrides": {"ABNN": {"target": "resnet18"}}})]
    with pytest.raises(ConfigError, match="valid: Normal, PGD-AT"):
        ch.trained_row(cfg, "GAT")


def test_an_override_changes_the_fd_spec_and_its_fingerprint(tmp_path, synthetic):
    base = ch.config("smoke", 0, "cpu", None, str(tmp_path))
    cfg = ch.config("smoke", 0, "cpu", None, str(tmp_path), overrides={ch.FD: {"lam": 0.5}})
    a, b = base.specs[ch.FD], cfg.specs[ch.FD]
    assert a.hp["lam"] == 1.0 and b.hp["lam"] == 0.5 and b.hp["h"] == a.hp["h"]
    assert any("overridden" in n for n in cfg.notes)
    data = synthetic[0].head(64)
    fp = lambda s: run_fingerprint(s.make_model(), s.make_method(), data, s.config)  # noqa: E731
    assert fp(a) != fp(b) and fp(a) == fp(ch.config("smoke", 0, "cpu", None, str(tmp_path)).specs[ch.FD])
    assert base.spec(ch.FD, 1).config.seed == 1 and base.spec(ch.FD).config.seed == 0
    with pytest.raises(ConfigError, match="valid: FD gradient regularization"):
        ch.config("smoke", 0, "cpu", None, str(tmp_path), overrides={"NuAT": {"lam_max": 2.0}})
    sched = a.config.schedule
    assert [sched(e)[0] for e in (0, 0.29, 0.3)] == pytest.approx([0.1, 0.1, 0.02])  # ÷5 at 30 % of training


def test_the_quick_plan_fits_ten_minutes_per_notebook_and_covers_every_row(tmp_path):
    cfg = ch.config("smoke", 0, "cpu", None, str(tmp_path))
    tasks = [t for p in ch.PARTS.values() for t in p]
    assert {lab for lab, off, kind in tasks if off == 0 and kind == "full"} == set(ch.METHODS)
    assert {lab for lab, off, _ in tasks if off == 1} == set(ch.SPREAD_ROWS)
    assert len(tasks) == len(set(tasks))
    minutes = ch.part_minutes(cfg)["est. total min"]
    assert (minutes <= 9.5).all(), minutes
    assert set(minutes.index) == {nb + ".ipynb" for nb in ch.NOTEBOOKS.values()}
    tp = ch.train_plan(cfg)                                        # the experiment layer's time model for FD
    assert list(tp["derived N"]) == [5.0, 5.0] and list(tp["epochs"]) == [4, 4]


# ------------------------------------------------------------------------------------------- Pareto front


def test_pareto_front_on_hand_made_points():
    cost = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, float("nan")]
    aa = [10.0, 30.0, 20.0, 30.0, 45.0, 45.0, 99.0]
    # (2, 20) is dominated by (2, 30); (3, 30) by (2, 30); (5, 45) by (4, 45); a missing cost is never on the front
    assert ch.pareto_mask(cost, aa) == [True, True, False, False, True, False, False]
    # identical points do not dominate each other; a single point is its own front
    assert ch.pareto_mask([1, 1], [5, 5]) == [True, True]
    assert ch.pareto_mask([3], [7]) == [True]


def _row(method, seed=0, clean=80.0, aa=40.0, n=1000, cost=4.0, epochs=5, train_s=100.0, checks=None):
    """A report row as add_row writes it (the analysis reads only rows)."""
    m = {"clean": clean, "pgd20": aa + 5, "pgd100": aa + 3, "gama100": aa + 1, "aa": aa}
    return {"table": ch.TABLE if seed == 0 else f"{ch.TABLE}_seed{seed}", "method": method, "metrics": m,
            "paper": {}, "ci": {}, "n": n, "cost_passes": cost, "train_s": train_s, "epochs": epochs, "note": "",
            "seed": seed, "gpu_s": train_s, "total_passes": cost * epochs, "hardware": "test GPU", "eval_batch": 1000,
            "source": "test", "selection": "last epoch", "recipe_epochs": 100, "family": ch.ROWS[method]["family"],
            "paper_source": "", "aa_warnings": [], "checks": checks, "verdict": None,
            "eps_curve": [{"defence": method, "eps_255": 8, "accuracy": aa, "clean": clean},
                          {"defence": method, "eps_255": 128, "accuracy": 0.0, "clean": clean}] if not seed else None,
            "batch_dependent": False, "metrics_b1": None}


def _rec(method, offset=0, n=1000, **kw):
    """An evaluate_row record."""
    return {"label": method, "offset": offset, "seed": offset, "kind": "full" if not offset else "suite", "n": n,
            "eval_batch": 1000, "metrics": {"clean": 80.0, "pgd20": 45.0, "pgd100": 43.0, "gama100": 41.0, "aa": 40.0},
            "batch_dependent": False, "metrics_b1": None, "aa_warnings": [], "hardware": "test GPU", "suite_s": 1.0,
            "checks": None, "eps_curve": None, "verdict": None, "checklist_s": None,
            "train": {"source": "test run", "recipe_epochs": 100, "model": "ResNet-18", "epochs": 5, "cost_passes": 4.0,
                      "total_passes": 20.0, "train_s": 100.0, "gpu_s": 100.0, "processes": 1,
                      "selection": "last epoch"}, **kw}


def test_pareto_points_and_table_follow_the_rows():
    rows = [_row("Normal", cost=2, aa=0.0, clean=92), _row("FBF", cost=4, aa=40), _row("NuAT", cost=7, aa=45),
            _row("PGD-AT", cost=22, aa=44), _row(ch.FD, cost=5, aa=20), _row("FBF", seed=1, cost=1, aa=99)]
    pts = ch.pareto_points(rows).set_index("method")
    assert list(pts.index) == ["Normal", "PGD-AT", "FBF", "NuAT", ch.FD]    # first seeds, in METHODS order
    assert list(pts.index[pts.front_cost_passes]) == ["Normal", "FBF", "NuAT"]
    tab = ch.pareto_table(pts.reset_index())
    assert tab.iloc[0]["front (cheapest first)"] == "Normal → FBF → NuAT"


def test_reported_points_use_the_derived_pass_counts_and_mark_what_is_not_autoattack():
    rp = ch.reported_points()
    assert rp.loc["PGD-AT", "cost_passes"] == 22 and rp.loc["TRADES", "cost_passes"] == 25
    assert rp.loc["NuAT", "cost_passes"] == 7 and rp.loc["NuAT-WA", "accuracy"] == 50.75
    assert rp.loc["PGD-AT", "total_passes"] == 22 * 200 and "(t = 10)" in rp.loc["TRADES", "note"]
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
    a = _row("FBF", 0, clean=80.0, aa=40.0, train_s=100.0)
    b = _row("FBF", 1, clean=83.0, aa=39.0, train_s=110.0)
    c = _row("Normal", 0)            # one seed only: not in the spread
    sp = ch.spread([a, b, c])
    assert set(sp.method) == {"FBF"}
    row = sp.set_index("metric").loc["clean"]
    assert row.abs_diff == pytest.approx(3.0) and row["diff"] == pytest.approx(3.0)
    lo_a, hi_a = accuracy_ci(80.0, 1000)
    lo_b, hi_b = accuracy_ci(83.0, 1000)
    assert row.ci_width == pytest.approx(((hi_a - lo_a) + (hi_b - lo_b)) / 2)
    assert row.ratio == pytest.approx(3.0 / row.ci_width)
    assert row.diff_lo < 3.0 < row.diff_hi and not row.beyond_sampling  # 3 points on 1 000 images: within noise
    assert sp.set_index("metric").loc["train_s", "abs_diff"] == pytest.approx(10.0)  # relative, in %
    big = ch.spread([a, _row("FBF", 1, clean=95.0, aa=40.0)])
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
    good = [{**c.row(), "defence": "FBF"} for c in ok]
    fails = [{**c.row(), "defence": "ABNN"} for c in bad]
    rows = [_row("FBF", checks=good), _row("ABNN", checks=fails)]
    assert ch.flagged(rows) == ["ABNN"]
    tab, details, verdicts = ch.checklist_tables(rows)
    assert list(tab.index) == ["FBF", "ABNN"] and tab.loc["ABNN", "accuracy → 0 as ε grows"] == "FAIL"


def _markdown(stem: str) -> str:
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    return " ".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown").replace("\n", " ")


def test_abnn_is_scored_as_crafted_with_autoattack_at_batch_size_one_and_its_row_and_prose_say_so(tmp_path):
    """The suite on a batch-global ABNN: PGD/GAMA scored in the batch they were crafted in, AutoAttack on the
    batch-size-1 function, every metric also scored one image at a time; the row note and the notebooks say so."""
    from robustlib.evaluation import evaluate
    from test_abnn import _labelled, tiny_abnn
    cfg = ch.config("smoke", 0, "cpu", None, str(tmp_path))
    net = tiny_abnn().eval()
    x, y = _labelled(net, 16)
    res = evaluate(net, (x, y), ch.suite(cfg, 16), batch_size=16, device="cpu", progress=False)
    assert res.meta["batch_dependent"] and res.meta["scoring"]["aa"].startswith("batch size 1")
    assert "crafted" in res.meta["scoring"]["pgd100"]
    assert all(k + "@b1" in res.flags for k in ch.METRICS)
    rec = _rec("ABNN", batch_dependent=True, metrics_b1={"clean": 70.0, "pgd20": 31.0, "pgd100": 30.0,
                                                         "gama100": 29.0, "aa": 25.0})
    row = ch.add_row(cfg, ch.report(cfg), rec)
    assert "AutoAttack attacks and scores the batch-size-1 function" in row["note"]
    assert "pgd100 30.0 %" in row["note"] and row["metrics_b1"]["aa"] == 25.0 and row["batch_dependent"]
    plain = ch.add_row(cfg, ch.report(cfg), _rec("Normal"))
    assert "batch-size-1" not in plain["note"]
    chapter, part = _markdown("90_comparison"), _markdown("95_comparison__bn")
    for text in (chapter, part):
        assert "batch-size-1 function" in text and "audited at its chapter's evaluation batch size." not in text
    assert "AutoAttack cannot be" in chapter and "robust accuracy at batch size 1" in chapter


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


def test_part_rows_are_gathered_into_the_chapter_in_table_order_with_the_spread(tmp_path):
    """Each part notebook writes its rows; the chapter gathers them (experiment.gather), orders the main table as
    METHODS and adds the spread table; the written file follows the results schema."""
    cfg = ch.config("smoke", 0, "cpu", None, str(tmp_path))
    for part, tasks in ch.PARTS.items():
        rep = ch.report(cfg, part=part)
        for label, offset, kind in tasks:
            checks = [audit.Check(label, c, True, "ok").row() for c in audit.MEANING] if kind == "full" else None
            rec = _rec(label, offset, checks=checks)
            if offset:
                rec["metrics"] = {**rec["metrics"], "clean": 70.0}
            ch.add_row(cfg, rep, rec)
        rep.write()
    chapter = ch.report(cfg)
    found = ch.collect(cfg, chapter, log=lambda s: None)
    assert list(found.status) == [f"{len(t)} rows" for t in ch.PARTS.values()]
    doc = results.load(chapter.write())
    main = [r for r in doc["rows"] if r["table"] == ch.TABLE]
    assert [r["method"] for r in main] == list(ch.METHODS)
    for r in main:
        assert set(r["metrics"]) == set(ch.METRICS) and all(r["metrics"][k] is not None for k in ch.METRICS)
        assert r["cost_passes"] is not None and r["epochs"] is not None and r["train_s"] is not None
        assert r["gpu_s"] is not None and r["hardware"] and len(r["checks"]) == 4 and r["verdict"] is None
    assert {r["method"] for r in doc["rows"] if r["table"] == f"{ch.TABLE}_seed1"} == set(ch.SPREAD_ROWS)
    spread = {r["method"]: r for r in doc["rows"] if r["table"] == "spread"}
    assert list(spread) == [m for m in ch.METHODS if m in ch.SPREAD_ROWS]
    assert spread["Normal"]["metrics"]["clean"] == pytest.approx(10.0)
    nuat = next(r for r in main if r["method"] == "NuAT")
    assert nuat["paper"]["aa"] == 49.24 and nuat["paper"]["pgd100"] is None
    assert ch.budget_table(chapter.rows).loc["ABNN", "model"] == ch.ROWS["ABNN"]["model"]


# ----------------------------------------------------------------------------------- reuse and the cache


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_root):
    """A smoke run folder in which the NuAT chapter's Normal run and this chapter's FD run exist."""
    out = tmp_path_factory.mktemp("comparison-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ROBUSTLIB_CHECKPOINTS", raising=False)
        cfg = ch.config("smoke", 0, "cpu", str(data_root), str(out))
        for m in ("Normal", ch.FD):
            ch.row(cfg, m, 0, progress=False)
    return out, data_root


def _fresh(run_dir):
    out, data_root = run_dir
    return ch.config("smoke", 0, "cpu", str(data_root), str(out))


def test_a_finished_run_is_reopened_through_trained_and_trains_nothing(run_dir, monkeypatch):
    monkeypatch.delenv("ROBUSTLIB_CHECKPOINTS", raising=False)
    first = _fresh(run_dir)
    before = {m: ch.row(first, m, 0, progress=False) for m in ("Normal", ch.FD)}

    def no_training(*a, **k):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(Trainer, "_run_epoch", no_training)
    cfg = _fresh(run_dir)
    for m in ("Normal", ch.FD):
        got = ch.row(cfg, m, 0, progress=False)
        assert got.trained.folder == before[m].trained.folder and got.key == before[m].key
        assert got.info["epochs"] == before[m].info["epochs"] == 1
        assert got.info["train_s"] == before[m].info["train_s"] > 0
        for p, q in zip(got.model.parameters(), before[m].model.parameters()):
            assert torch.equal(p.cpu(), q.cpu())
    normal, fd = cfg._rows[("Normal", 0)], cfg._rows[(ch.FD, 0)]
    assert normal.info["cost_passes"] == 2.0 and fd.info["cost_passes"] == 5.0   # measured N per sample
    assert fd.trained.folder.parent == cfg.s.checkpoint_dir and fd.trained.spec == cfg.specs[ch.FD]
    with pytest.raises(ConfigError, match="1 seed"):
        ch.row(cfg, "ABNN", 1)


def test_row_provenance_names_the_run_folder_and_the_selection_rule(run_dir, monkeypatch):
    """Intended difference from the pre-port smoke results (runs/baseline-smoke): a row's ``source`` (and the start of
    its note) names the run's checkpoint folder, ``<chapter> chapter, run <alias>-<fingerprint>``, instead of the
    chapter's internal run id and part notebook ("NuAT chapter, run cifar10/Normal (12_nuat__single)"; second seeds
    were "this chapter: run … with seed 1"); ``selection`` says "hold-out robust accuracy" where it said "hold-out
    I-FGSM-7 accuracy" (the selection attack is the chapter's business); ABNN's ``recipe_epochs`` is its recipe's 200
    (was None) and its note no longer carries the substitute's pre-training seconds. Metrics, costs, epochs, checks,
    verdicts and ε curves are identical."""
    monkeypatch.delenv("ROBUSTLIB_CHECKPOINTS", raising=False)
    cfg = _fresh(run_dir)
    normal, fd = ch.row(cfg, "Normal", 0, progress=False), ch.row(cfg, ch.FD, 0, progress=False)
    assert normal.info["source"] == f"NuAT chapter, run {normal.trained.folder.name}"
    assert normal.info["selection"] == f"hold-out clean accuracy, epoch {normal.trained.selected_epoch()}"
    assert fd.info["source"] == ch.ROWS[ch.FD]["source"] and fd.info["selection"] == ch.ROWS[ch.FD]["selection"]
    assert fd.info["recipe_epochs"] == ch.RECIPES[ch.FD]["epochs"] == 200


def test_evaluations_and_checklists_are_cached_beside_the_checkpoint(run_dir, monkeypatch):
    monkeypatch.delenv("ROBUSTLIB_CHECKPOINTS", raising=False)
    cfg = _fresh(run_dir)
    rec = ch.evaluate_row(cfg, ch.FD, 0, "full", log=lambda s: None, progress=False)
    assert set(rec["metrics"]) == set(ch.METRICS) and len(rec["checks"]) == 4 and rec["verdict"]
    assert [c["check"] for c in rec["checks"]] == list(audit.MEANING)
    assert rec["eps_curve"][-1]["eps_255"] == 128 and isinstance(rec["eps_curve"][-1]["eps_255"], int)
    folder = cfg._rows[(ch.FD, 0)].trained.folder
    assert len(list(folder.glob("eval-*.json"))) == 3            # suite flags, AutoAttack's warnings, checklist

    def no_attack(*a, **k):
        raise AssertionError("a cached evaluation was recomputed")
    monkeypatch.setattr(ex, "evaluate", no_attack)
    monkeypatch.setattr(audit, "evaluate", no_attack)
    again = ch.evaluate_row(_fresh(run_dir), ch.FD, 0, "full", log=lambda s: None, progress=False)
    assert {k: again[k] for k in ("metrics", "checks", "eps_curve", "verdict", "aa_warnings")} == \
        {k: rec[k] for k in ("metrics", "checks", "eps_curve", "verdict", "aa_warnings")}
    other = _fresh(run_dir)
    other.profile = {**other.profile, "restarts": other.profile["restarts"] + 1}   # other checklist settings
    with pytest.raises(AssertionError, match="recomputed"):
        ch.evaluate_row(other, ch.FD, 0, "full", log=lambda s: None, progress=False)
    with pytest.raises(ConfigError, match="valid: full, suite"):
        ch.evaluate_row(cfg, ch.FD, 0, "everything")


def test_config_keeps_its_five_parameter_call_and_the_report_knows_its_parts(tmp_path):
    cfg = ch.config("smoke", 0, "cpu", None, str(tmp_path))
    assert cfg.n_test == ch.PROFILES["smoke"]["n_test"] and cfg.eps_grid == (8, 128)
    assert isinstance(ch.report(cfg, "fd"), Report) and ch.report(cfg).part is None
    with pytest.raises(ConfigError, match="valid: fd, baselines"):
        ch.report(cfg, "nope")
    assert set(ch.PROFILES) == set(PROFILE_NAMES)                  # every profile of the book, cpu included
    with pytest.raises(UnknownNameError, match="Valid profile names: cpu, paper, quick, smoke"):
        ch.config("cpus", 0, "cpu", None, str(tmp_path))
    assert "FD gradient regularization" in cfg.table().index and not ch.rows_table().empty


# ------------------------------------------------------------------------------------------ the cpu profile


def test_the_cpu_profile_builds_with_its_budgets_and_says_what_it_cut(tmp_path):
    cfg = ch.config("cpu", 0, "cpu", None, str(tmp_path))
    fd = cfg.specs[ch.FD]
    assert fd.model_kw == {"width": 16} and fd.config.epochs == 2 and fd.config.amp == "off"
    assert fd.config.batch_size == ch.RECIPES[ch.FD]["batch"] and fd.extra["paper_epochs"] == 200
    assert cfg.n_test == 500 and cfg.pgd_record == {"pgd20": 20, "pgd100": 50} and cfg.gama_steps == 50
    note = ch.NOTES["cpu"]
    assert cfg.notes[0] == note and note.endswith("CPU scale: compare the differences between rows, not the absolute "
                                                  "numbers.")
    for cut in ("first 500 test images", "PGD-50", "GAMA-PGD-50", "unchanged standard version", "first 100",
                "PGD-10 instead of PGD-20", "PGD-20 × 2 restarts", "Square with 100 queries", "1.5 points",
                "2 epochs", "width 16"):
        assert cut in note, cut
    tab = cfg.table()["value"]
    assert "AutoAttack on the first 100" in tab["test images"] and "min(PGD-50, GAMA-PGD-50)" in \
        tab["checklist: black box"] and "PGD-5/10/20" in tab["checklist: steps, restarts"]
    row = ch.add_row(cfg, ch.report(cfg), _rec(ch.FD, n=500, aa_n=100))
    assert "pgd100 holds PGD-50" in row["note"] and "AutoAttack standard on the first 100" in row["note"]


def test_cpu_autoattack_is_the_standard_version_on_a_prefix_with_its_own_interval(tmp_path):
    cfg = ch.config("cpu", 0, "cpu", None, str(tmp_path))
    aa = ch.suite(cfg)["aa"]
    assert (aa.version, aa.attacks, aa.apgd_budget, aa.square_queries, aa.targets) == ("standard", None, None, None,
                                                                                        None)
    assert ch.aa_images(cfg) == cfg.aa_n == 100 < cfg.n_test
    assert ch.aa_images(ch.config("quick", 0, "cpu", None, str(tmp_path))) == 1000   # quick: on every test image
    rep = ch.report(cfg)
    row = ch.add_row(cfg, rep, _rec("NuAT", n=500, aa_n=100))   # aa 40 % of 100, the others of 500 images
    assert row["aa_n"] == 100 and row["n"] == 500
    assert row["ci"]["aa"] == pytest.approx(wilson_interval(40, 100))
    assert row["ci"]["clean"] == pytest.approx(accuracy_ci(80.0, 500))
    width = row["ci"]["aa"][1] - row["ci"]["aa"][0]
    assert 17 < width < 20                                       # ≈ ±9 points on 100 images
    a = {**_row("FBF", 0, aa=40.0, n=500), "aa_n": 100}
    b = {**_row("FBF", 1, aa=45.0, n=500), "aa_n": 100}
    sp = ch.spread([a, b]).set_index("metric")
    lo, hi = accuracy_ci(40.0, 100)
    lo2, hi2 = accuracy_ci(45.0, 100)
    assert sp.loc["aa", "ci_width"] == pytest.approx(((hi - lo) + (hi2 - lo2)) / 2)   # on AutoAttack's 100 images
    assert sp.loc["clean", "ci_width"] < sp.loc["aa", "ci_width"]


def test_the_cpu_plan_keeps_every_part_notebook_within_45_minutes(tmp_path):
    cfg = ch.config("cpu", 0, "cpu", None, str(tmp_path))
    pm = ch.part_minutes(cfg)
    assert list(pm.columns) == ["est. cpu train min", "est. cpu eval min", "est. total min", "limit min"]
    assert not any("quick" in c for c in ch.plan(cfg).columns)   # the columns say which basis
    assert set(pm.index) == {nb + ".ipynb" for nb in ch.NOTEBOOKS.values()}
    assert (pm["est. total min"] <= 45.0).all() and (pm["limit min"] == 45.0).all(), pm
    assert 150 < pm["est. total min"].sum() < 240                # the chapter: a few hours
    tp = ch.train_plan(cfg)                                      # FD: 2 epochs of 5N on 50 000 images, strict fp32
    assert list(tp["epochs"]) == [2, 2] and tp["minutes"].iloc[0] == pytest.approx(
        5 * 390 * 128 * 2 * ch.CPU_PLAN["fd_seconds_per_pass"] / 60)
    p = ch.plan(cfg)
    assert p.loc[("94_comparison__seed1.ipynb", "NuAT", 1), "est. cpu train min"] == pytest.approx(1069.3 / 60)
    assert p.loc[("95_comparison__bn.ipynb", "ABNN", 0), "est. cpu eval min"] == pytest.approx(
        1.25 * p.loc[("93_comparison__single_step.ipynb", "NuAT", 0), "est. cpu eval min"], rel=0.15)
    # the time model follows the budgets: AutoAttack on 200 images would not fit
    cfg.profile = {**cfg.profile, "aa_n": 200}
    assert (ch.part_minutes(cfg)["est. total min"] > 45.0).any()
    cfg.profile = {**cfg.profile, "aa_n": 100, "aa_version": "custom"}
    with pytest.raises(ConfigError, match="plans AutoAttack 'standard' only"):
        ch.plan(cfg)
    with pytest.raises(ConfigError, match="valid: full, suite"):
        ch.eval_seconds(cfg, "NuAT", "everything")


def test_the_cpu_autoattack_estimate_follows_its_attacks_and_the_quick_plan_is_unchanged(tmp_path):
    p = ch.PROFILES["cpu"]
    step, fwd = ch.CPU_PLAN["aa_step_s"], ch.CPU_PLAN["forward_s"]
    # an undefended model: APGD-CE (100 iterations) on the clean-correct images, nothing left for the others
    assert ch.cpu_aa_seconds(p, {"clean": 1.0, "aa": 0.0}, 10) == pytest.approx(10 * (fwd + 100 * step))
    robust = ch.cpu_aa_seconds(p, {"clean": 1.0, "aa": 1.0}, 1)  # every image robust: 9 + 9 targets, 5 000 queries
    assert robust == pytest.approx(fwd + 100 * step + 900 * step + 900 * (step + fwd) + 5000 * fwd)
    quick = ch.part_minutes(ch.config("quick", 0, "cpu", None, str(tmp_path)))
    assert list(quick.columns)[:2] == ["est. quick train min", "est. quick eval min"]
    assert (quick["limit min"] == 10.0).all()


def test_cpu_second_seed_estimates_are_the_nuat_chapters_own(tmp_path):
    """CPU_PLAN's second-seed seconds are the NuAT chapter's cpu time model of the same runs (its specs, derived
    passes and CPU_SECONDS_PER_PASS); a change there must be carried here."""
    from robustlib.chapters import nuat
    from robustlib.chapters.nuat import chapter as nuat_chapter
    ncfg = nuat.config("cpu", 0, "cpu", None, str(tmp_path))
    for label, want in ch.CPU_PLAN["second_seed"].items():
        spec = ncfg.specs[f"cifar10/{label}"]
        n, spp, _ = nuat_chapter.planning(spec, "cpu")
        assert ex.estimate_seconds(spec, n, spp) == pytest.approx(want, rel=0.01), label
        assert spec.model_kw.get("width") == 16
    assert {lab for lab, off, _ in (t for p in ch.PARTS.values() for t in p)
            if off and ch.ROWS[lab]["chapter"] == "nuat"} == set(ch.CPU_PLAN["second_seed"])


def test_autoattack_on_a_prefix_runs_on_its_first_images_and_is_cached_apart(run_dir, monkeypatch):
    """With ``aa_n`` the suite runs without AutoAttack on every test image and AutoAttack alone on the first aa_n,
    each cached; the record carries per-image flags of both lengths and AutoAttack's image count."""
    monkeypatch.delenv("ROBUSTLIB_CHECKPOINTS", raising=False)
    cfg = _fresh(run_dir)
    cfg.profile = {**cfg.profile, "aa_n": 8}
    rec = ch.evaluate_row(cfg, "Normal", 0, "suite", log=lambda s: None, progress=False)
    assert rec["n"] == cfg.n_test == 32 and rec["aa_n"] == 8
    assert len(rec["flags"]["aa"]) == 8 and len(rec["flags"]["pgd20"]) == 32
    assert rec["metrics"]["aa"] == pytest.approx(100 * sum(rec["flags"]["aa"]) / 8)
    rm = cfg._rows[("Normal", 0)]
    atk = ch.suite(cfg, rm.eval_batch)
    seed = derive_seed(ch.PAPER, cfg.s.seed, "Normal", 0)
    direct = ex.evaluate_cached(None, {"aa": atk["aa"]}, cfg.test().head(8), model=rm.model, batch_size=rm.eval_batch,
                                seed=seed, device="cpu", progress=False)
    assert list(direct.flags["aa"]) == rec["flags"]["aa"]     # the first 8 test images, the same seed

    def no_attack(*a, **k):
        raise AssertionError("a cached evaluation was recomputed")
    monkeypatch.setattr(ex, "evaluate", no_attack)
    again = _fresh(run_dir)
    again.profile = {**again.profile, "aa_n": 8}
    assert ch.evaluate_row(again, "Normal", 0, "suite", log=lambda s: None, progress=False)["flags"] == rec["flags"]


# ------------------------------------------------------------------------------------------------ the claims


def _flags(k, n=100):
    """k correct images, then n − k wrong ones."""
    return [True] * k + [False] * (n - k)


def _claim_rows(cfg, aa):
    """A report whose first-seed rows carry per-image AutoAttack flags (``aa``: {row: flags}), through add_row."""
    rep = ch.report(cfg)
    for label, f in aa.items():
        rec = _rec(label, n=500, aa_n=len(f))
        rec["flags"] = {k: _flags(400, 500) for k in ch.METRICS if k != "aa"} | {"aa": f}
        rec["metrics"] = {**rec["metrics"], "aa": 100 * sum(f) / len(f)}
        rec["train"] = {**rec["train"], "cost_passes": {"NuAT": 7.0, "PGD-AT": 22.0, ch.FD: 5.0}.get(label, 4.0)}
        ch.add_row(cfg, rep, rec)
    return rep


def test_claims_give_the_verdict_of_their_paired_interval(tmp_path):
    cfg = ch.config("cpu", 0, "cpu", None, str(tmp_path))
    assert [c.a for c in ch.CLAIMS] and all(c.a in ch.METHODS and (c.b is None or c.b in ch.METHODS)
                                            for c in ch.CLAIMS)
    rep = _claim_rows(cfg, {
        "NuAT": _flags(60), "FBF": _flags(30),          # NuAT wins 30 images, loses none: supported
        "PGD-AT": _flags(58),                           # 2 points from NuAT on 100 images: not resolvable
        ch.FD: _flags(20), "Normal": _flags(0),         # FD beats Normal; PGD-AT beats FD
        "AdvProp": _flags(0),                           # 0 of 100: the Wilson interval lies below 5 %
        "ABNN": _flags(90),                             # far above PGD-AT: "ABNN below PGD-AT" contradicted
    })
    t = ch.claims(rep)
    v = {c.key: t.loc[c.statement, "verdict"] for c in ch.CLAIMS}
    assert v == {"nuat_vs_fbf": claims.SUPPORTED, "nuat_matches_pgdat": claims.UNRESOLVED,
                 "nuat_cost": claims.SUPPORTED, "fd_beats_normal": claims.SUPPORTED,
                 "pgdat_beats_fd": claims.SUPPORTED, "fd_cost": claims.SUPPORTED,
                 "advprop_not_robust": claims.SUPPORTED, "abnn_beats_normal": claims.SUPPORTED,
                 "abnn_below_pgdat": claims.CONTRADICTED}, v
    nuat = t.loc[next(c.statement for c in ch.CLAIMS if c.key == "nuat_vs_fbf")]
    assert nuat["ours"] == "+30.0" and nuat["n"] == 100          # paired, on AutoAttack's 100 images
    cost = t.loc[next(c.statement for c in ch.CLAIMS if c.key == "nuat_cost")]
    assert cost["ours"] == f"{7 / 22:.2f}×"
    # overlapping: the same accuracy but different images — not resolvable either way
    mixed = _claim_rows(cfg, {"NuAT": _flags(30), "FBF": [False] * 10 + _flags(30, 90), "Normal": _flags(3)})
    t2 = ch.claims(mixed)
    by = {c.key: t2.loc[c.statement, "verdict"] for c in ch.CLAIMS}
    assert by["nuat_vs_fbf"] == claims.UNRESOLVED
    assert by["fd_beats_normal"] == by["abnn_below_pgdat"] == by["nuat_cost"] == claims.MISSING   # rows absent
    # a second-seed row never enters the claims
    seed1 = ch.add_row(cfg, mixed, {**_rec("AdvProp", 1, n=500, aa_n=100), "flags": {"aa": _flags(0)}})
    assert seed1["table"] != ch.TABLE and ch.claims(mixed).loc[next(
        c.statement for c in ch.CLAIMS if c.key == "advprop_not_robust"), "verdict"] == claims.MISSING


def test_rows_carry_flags_through_the_results_file_into_the_claims(tmp_path):
    cfg = ch.config("cpu", 0, "cpu", None, str(tmp_path))
    part = ch.report(cfg, part="single_step")
    for label, k in (("FBF", 30), ("NuAT", 60)):
        rec = _rec(label, n=500, aa_n=100)
        rec["flags"] = {m: _flags(400, 500) for m in ch.METRICS if m != "aa"} | {"aa": _flags(k)}
        ch.add_row(cfg, part, rec)
    part.write()
    chapter = ch.report(cfg)
    ex.gather(chapter, {"single_step": ch.NOTEBOOKS["single_step"]})
    statement = next(c.statement for c in ch.CLAIMS if c.key == "nuat_vs_fbf")
    assert ch.claims(chapter).loc[statement, "verdict"] == claims.SUPPORTED


def test_every_comparison_notebook_offers_the_cpu_profile_and_the_chapter_shows_its_claims_first():
    for stem in ch.NOTEBOOKS.values():
        nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
        first = "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])
        assert '"cpu" (2 CPU cores, ≤ 45 min)' in first and first.startswith('PROFILE = "smoke"'), stem
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), stem
    nb = json.loads((ROOT / "notebooks" / "90_comparison.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert "ch.config(PROFILE" in code[1] and "ch.claims(report)" in code[2] and "ch.collect(cfg, report)" in code[2]
    assert sum("ch.collect(" in c for c in code) == 1
