"""The comparison chapter: its tables (rows, the FD recipe, profiles), the Pareto front, the seed spread, the
checklist verdicts, the results rows and the gather, the plan's budget, that a paper chapter's finished run is
reopened through its public ``trained`` without training, and that every evaluation is cached beside its checkpoint."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import robustlib.experiment as ex
from robustlib import audit, results
from robustlib.attacks import AutoAttack
from robustlib.chapters import comparison as ch
from robustlib.chapters.common import PROFILES as PROFILE_NAMES
from robustlib.errors import ConfigError
from robustlib.methods import METHODS as REGISTERED
from robustlib.methods.advprop import bn_route, dual_batchnorms, dualize
from robustlib.models import MODELS
from robustlib.report import Report
from robustlib.stats import accuracy_ci
from robustlib.training import Trainer, run_fingerprint
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


def _rec(method, offset=0, **kw):
    """An evaluate_row record."""
    return {"label": method, "offset": offset, "seed": offset, "kind": "full" if not offset else "suite", "n": 1000,
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
    for p in set(PROFILE_NAMES) - set(ch.PROFILES):                # a profile this chapter does not define yet
        with pytest.raises(ConfigError, match="valid here: smoke, quick, paper"):
            ch.config(p, 0, "cpu", None, str(tmp_path))
    assert "FD gradient regularization" in cfg.table().index and not ch.rows_table().empty
