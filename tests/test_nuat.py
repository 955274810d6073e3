"""NuAT chapter: the nuclear-norm term, the single-step attack, the λ / learning-rate schedules, measured cost against
the derived pass counts, the baselines' mechanics, robustness on synthetic data, the ImageNet-style loader, and a
smoke run of one part of the chapter."""
from __future__ import annotations

import copy
import types

import numpy as np
import pytest
import torch

import robustlib as rl
from robustlib import experiment as ex
from robustlib import results
from robustlib.attacks.nuclear import MatrixNormAttack, frobenius_norm, nuclear_norm
from robustlib.chapters import nuat as ch
from robustlib.methods import PGDAT, Standard
from robustlib.methods.baselines import GAT, RMGM, TRADES, FreeAT, TRADESAWP
from robustlib.methods.nuat import NuAT, NuAT2, NuAT2WA, NuATHybrid, ramp_value
from robustlib.reported import lookup, methods, spec
from robustlib.schedules import Compressed
from conftest import tiny_resnet

EPS, ALPHA = 8 / 255, 4 / 255


def _step(epoch=0, iteration=0, global_step=0, nb=100, emas=None):
    trainer = types.SimpleNamespace(batches_per_epoch=nb, emas=emas or {})
    return rl.methods.Step(epoch, iteration, global_step, trainer)


# ----------------------------------------------------------------------------------------------- the norm term


@pytest.mark.parametrize("shape,rank", [((64, 10), None), ((16, 10), 3), ((8, 4), None)])
def test_nuclear_norm_is_the_sum_of_singular_values(shape, rank):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(*shape, generator=g)
    if rank:
        a = torch.randn(shape[0], rank, generator=g) @ torch.randn(rank, shape[1], generator=g)
    s = np.linalg.svd(a.numpy().astype(np.float64), compute_uv=False)
    assert float(nuclear_norm(a)) == pytest.approx(s.sum(), rel=1e-5)
    assert float(frobenius_norm(a)) == pytest.approx(np.sqrt((s ** 2).sum()), rel=1e-5)
    assert float(frobenius_norm(a)) <= float(nuclear_norm(a)) <= np.sqrt(min(shape)) * float(frobenius_norm(a)) + 1e-4


def test_nuclear_norm_gradient_passes_gradcheck_in_float64():
    a = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(nuclear_norm, (a,), eps=1e-6, atol=1e-5)
    u, _, vh = torch.linalg.svd(a.detach(), full_matrices=False)
    g, = torch.autograd.grad(nuclear_norm(a), a)
    assert torch.allclose(g, u @ vh, atol=1e-8), "the gradient of ‖A‖_* is UVᵀ"


def test_nuclear_norm_runs_in_fp32_under_bf16_autocast():
    a = torch.randn(64, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.nn.Linear(10, 10)(a)
        assert logits.dtype == torch.bfloat16
        n = nuclear_norm(logits)
    assert n.dtype == torch.float32
    assert float(n.detach()) == pytest.approx(float(nuclear_norm(logits.detach().float())), rel=1e-6)


# ------------------------------------------------------------------------------------------ single-step attack


def test_single_step_attack_starts_at_plus_minus_alpha_and_stays_in_the_ball(standard_model, synthetic):
    x, y = synthetic[1].images()[:64], synthetic[1].y[:64]
    m = NuAT(EPS, ALPHA, lam_max=4.5)
    model = copy.deepcopy(standard_model).train()   # as during training: the attack must switch BN itself
    bns = [mod for mod in model.modules() if isinstance(mod, torch.nn.BatchNorm2d)]
    seen = []
    hooks = [bn.register_forward_pre_hook(lambda mod, inp: seen.append((mod.training, torch.is_grad_enabled())))
             for bn in bns[:1]]
    torch.manual_seed(0)
    x0 = m.start(x)
    inside = (x > ALPHA + 1e-6) & (x < 1 - ALPHA - 1e-6)
    assert torch.allclose((x0 - x)[inside].abs(), torch.full_like(x[inside], ALPHA), atol=1e-6)
    assert 0.45 < ((x0 - x)[inside] > 0).float().mean() < 0.55, "±α with probability ½ each"
    for lam, gs in ((0.0, 0), (4.5, 1)):
        torch.manual_seed(0)
        seen.clear()
        x_adv = m.attack(model, x, y, lam, _step(global_step=gs))
        assert seen == [(True, False), (False, True)], "train-mode no-grad reference, then an eval-mode ascent step"
        assert model.training and all(bn.training for bn in bns), "the model's train mode is put back"
        d = x_adv - x
        assert d.abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
        interior = (x > EPS + 1e-6) & (x < 1 - EPS - 1e-6)
        mags = d[interior].abs()
        assert torch.all(torch.isclose(mags, torch.tensor(ALPHA), atol=1e-6)
                         | torch.isclose(mags, torch.tensor(EPS), atol=1e-6)), "one ε step from ±α: |δ| ∈ {α, ε}"
    for h in hooks:
        h.remove()


def test_nuclear_term_only_on_odd_iterations_and_the_textbook_switch(standard_model, synthetic):
    x, y = synthetic[1].images()[:32], synthetic[1].y[:32]
    code, book = NuAT(alternate=True), NuAT(alternate=False)
    seen = []
    for m in (code, book):
        calls = []
        orig = m.regulariser
        m.regulariser = lambda a, b, o=orig, c=calls: (c.append(1), o(a, b))[1]
        for gs in range(4):
            m.attack(standard_model, x, y, 1.0, _step(global_step=gs))
        seen.append(len(calls))
    assert seen == [2, 4]


def test_matrix_norm_attacks_stay_in_the_ball_and_raise_their_norm(standard_model, synthetic):
    x, y = synthetic[1].images()[:64], synthetic[1].y[:64]
    for kind in ("nuc", "fro"):
        atk = MatrixNormAttack(EPS, kind, steps=5, alpha=2 / 255)
        torch.manual_seed(0)
        x_adv = atk.perturb(standard_model, x, y)
        assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
        with torch.no_grad():
            clean = standard_model(x)
            start = standard_model((x + ALPHA * torch.sign(torch.randn_like(x))).clamp(0, 1))
            f = nuclear_norm if kind == "nuc" else frobenius_norm
            assert f(standard_model(x_adv) - clean) > f(start - clean)
    assert {"nuclear", "frobenius"} <= set(rl.ATTACKS.names())


# ---------------------------------------------------------------------------------------------- schedules


def test_lambda_ramps_give_the_published_values():
    assert [ramp_value(e, 4.5, 90) for e in (0, 1, 10, 45, 90, 95, 99)] == pytest.approx(
        [0, 0.05, 0.5, 2.25, 4.5, 4.5, 4.5])
    assert [ramp_value(e, 4.0, 100) for e in (0, 50, 99)] == pytest.approx([0, 2.0, 3.96])
    assert ramp_value(99, 4.0, 80) == 4.0 and ramp_value(3, 4.0, 80, ramp=False) == 4.0
    nuat = NuAT(lam_max=4.5, ramp_epochs=90)
    assert nuat.lam(_step(epoch=10, iteration=99)) == pytest.approx(0.5), "λ is updated once per epoch"
    # a 5-epoch run follows the 100-epoch curve as a function of progress (λ changes every 1/20 epoch)
    short = NuAT(lam_max=4.5, ramp_epochs=90, epoch_scale=20)
    assert short.lam(_step(epoch=2, iteration=50)) == pytest.approx(ramp_value(50, 4.5, 90))
    gat = GAT(epoch_scale=1.0)   # GAT_cifar10.py multiplies λ at the end of epoch 85: λ = 40 from epoch 86
    assert gat.lam(_step(epoch=85, iteration=99)) == 10 and gat.lam(_step(epoch=86)) == 40


def test_learning_rate_schedules_give_the_published_values():
    s = ch.schedule_of("cifar10/NuAT")
    expect = {0: (0.0, 0.9), 20: (0.05, 0.85), 40: (0.1, 0.8), 80: (0.02, 0.88), 85: (0.02, 0.88),
              86: (0.002, 0.88), 90: (0.002, 0.88), 91: (0.0002, 0.88), 99: (0.0002, 0.88)}
    for e, (lr, mom) in expect.items():
        assert s(e) == pytest.approx((lr, mom), abs=1e-9), e
    wa = ch.schedule_of("cifar10/NuAT-WA")
    assert wa(25)[0] == pytest.approx(0.1) and wa(100)[0] == pytest.approx(0.0, abs=1e-12)
    s2 = ch.schedule_of("wrn/NuAT2")
    assert [s2(e)[0] for e in (20, 35, 40, 41, 46, 54)] == pytest.approx([0.1, 0.025, 0.025, 0.0025, 0.00025,
                                                                          0.00025])
    assert ch.schedule_of("wrn/NuAT2-WA")(20)[0] == pytest.approx(0.1)
    fast = Compressed(s, 20.0)   # 5 run epochs for 100 paper epochs
    for e in (0.5, 2.0, 4.0, 4.3, 4.55, 4.99):
        assert fast(e) == pytest.approx(s(e * 20))


def test_scaled_weight_average_horizon():
    assert ch.scaled_tau(0.9998, 76500, 76500) == pytest.approx(0.9998)
    assert ch.scaled_tau(0.9998, 76500, 3825) == pytest.approx(0.996)


# ---------------------------------------------------------------------------------------------------- cost


@pytest.fixture(scope="module")
def small():
    return rl.load_dataset("synthetic", "train", n=128)


def _measure(method, data, ema=(), batches=1, epochs=1):
    cfg = rl.TrainConfig(epochs=epochs, batch_size=16, augment=None, max_batches=batches, ema=ema,
                         schedule={"name": "constant", "lr": 0.01})
    return rl.train(tiny_resnet(extra_relu=True), method, data, cfg, device="cpu", progress_bar=False)


# Passes per training sample per epoch, derived by hand (nuat.md §7 and each method's docstring): the cost meter must
# measure exactly these, and each method's own statement (derived_passes) must say the same.
DERIVED = {"Normal": 2, "R-MGM": 8, "GAT": 7, "NuAT": 7, "NuAT2": 9, "NuAT2-WA": 9, "PGD-AT": 22, "TRADES": 25,
           "AWP": 29}


@pytest.mark.parametrize("label,make,ema", [
    ("NuAT", lambda: NuAT(), ()),
    ("NuAT2", lambda: NuAT2(), ()),
    ("NuAT2-WA", lambda: NuAT2WA(), (0.99, 0.9998)),
    ("GAT", lambda: GAT(), ()),
    ("PGD-AT", lambda: PGDAT(EPS, 2 / 255, 10), ()),
    ("TRADES", lambda: TRADES(), ()),
    ("AWP", lambda: TRADESAWP(warmup_epochs=0), ()),
    ("R-MGM", lambda: RMGM(), ()),
    ("Normal", lambda: Standard(), ()),
])
def test_measured_cost_matches_the_derived_pass_count(label, make, ema, small):
    res = _measure(make(), small, ema, epochs=2 if label == "NuAT2-WA" else 1, batches=1)
    assert res.cost["total"] == pytest.approx(DERIVED[label]) == make().derived_passes()
    if label == "NuAT2-WA":  # epoch 0 attacks with the live model, epoch 1 with the τ = 0.99 average
        assert res.cost["ema0.99.forward"] > 0 and res.cost["ema0.99.backward"] > 0
    if label == "AWP":
        assert res.cost["proxy.forward"] == res.cost["proxy.backward"] == pytest.approx(2)


def test_free_at_replays_each_batch_and_keeps_delta_in_the_ball(small):
    m = FreeAT(EPS, replays=4)
    res = _measure(m, small, batches=2)
    assert res.cost["total"] == pytest.approx(2.0), "2N per replay"
    assert m._delta is not None and m._delta.abs().max() <= EPS + 1e-7 and m._delta.abs().max() > 0
    assert FreeAT(EPS, replays=8).derived_passes() == 16 == ch.recipe_method("cifar10/ATF").derived_passes()


def test_awp_removes_its_weight_perturbation_before_the_update(small):
    model = tiny_resnet()
    m = TRADESAWP(steps=2, warmup_epochs=0)
    trainer = types.SimpleNamespace(model=model, meter=rl.CostMeter(), batches_per_epoch=1, emas={})
    m.setup(trainer)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    x, y = small.images()[:32], small.y[:32]
    loss, _ = m.loss(model, x, y, _step())
    moved = [k for k, v in model.named_parameters() if not torch.equal(v, before[k])]
    assert moved and all(k.endswith("weight") for k in moved), "w + v on conv/linear weights during the loss"
    for k in moved:
        rel = (dict(model.named_parameters())[k].detach() - before[k]).norm() / before[k].norm()
        assert float(rel) == pytest.approx(0.005, rel=1e-3), "‖v_l‖ = γ‖w_l‖"
    loss.backward()
    m.post_backward(trainer)
    assert all(torch.allclose(v, before[k], atol=1e-7) for k, v in model.named_parameters())


def test_hybrid_takes_the_second_step_when_triggered_and_logs_its_rate(small):
    always = NuATHybrid(margin=1e9)   # every single-step attack counts as weak
    res = _measure(always, small, batches=2)
    assert res.cost["total"] == pytest.approx(7 + 3)
    assert res.history["two_step"].iloc[-1] == pytest.approx(1.0) and always.two_step_rate == 1.0
    never = NuATHybrid(margin=-1e9)
    assert _measure(never, small).cost["total"] == pytest.approx(7)
    q = NuATHybrid(target_rate=0.25, min_history=4)
    rates = []
    for r in np.random.default_rng(0).uniform(1.0, 3.0, 400):
        w = q.weak(float(r))
        q._ratios.append(float(r))
        rates.append(w)
    assert 0.15 < np.mean(rates[50:]) < 0.35, "the online quantile keeps the two-step fraction near the target"


# ------------------------------------------------------------------------------------------ robustness


def test_nuat_gives_higher_pgd_accuracy_than_normal_training_on_synthetic_data(standard_model, synthetic):
    train, test = synthetic[0].head(640), synthetic[1]
    torch.manual_seed(0)
    cfg = rl.TrainConfig(epochs=3, batch_size=64, augment=None, seed=0,
                         schedule={"name": "cyclic", "max_lr": 0.1, "up": 1, "down": 2, "cycle_momentum": False})
    nuat = rl.train(tiny_resnet(), NuAT(lam_max=4.5, ramp_epochs=1), train, cfg, device="cpu",
                    progress_bar=False).model.eval()
    pgd = rl.PGD(EPS, 2 / 255, 10)
    torch.manual_seed(0)
    acc_std = rl.evaluate(standard_model, test, {"pgd": pgd}, device="cpu", progress=False).accuracies()
    torch.manual_seed(0)
    acc_nuat = rl.evaluate(nuat, test, {"pgd": pgd}, device="cpu", progress=False).accuracies()
    assert acc_nuat["pgd"] > acc_std["pgd"] + 10, (acc_nuat, acc_std)


# ----------------------------------------------------------------------------------------- reported numbers


def test_reported_tables_keep_every_row_and_the_fbf_inconsistency():
    assert len(methods("nuat", ch.T1)) == 14
    assert len([r for r in spec("nuat", ch.T2)["rows"] if not r.get("optional")]) == 13
    assert lookup("nuat", ch.T1, "FBF")["aa"] == 43.12 and lookup("nuat", ch.T3["cifar10"], "FBF")["aa"] == 42.37
    assert [r["method"] for r in spec("nuat", ch.T2)["rows"] if r.get("optional")] == ["NuAT-WA-H (80+32)"]
    for t in ch.T3.values():
        assert len(methods("nuat", t)) == 9


# ------------------------------------------------------------------------------------------ ImageNet folder


def test_image_folder_with_a_class_list_converts_to_npz_shards(tmp_path):
    from PIL import Image
    from robustlib.imagefolder import convert_image_folder, read_class_list
    rng = np.random.default_rng(0)
    wnids = ["n001", "n002", "n003"]
    for split, n in (("train", 3), ("val", 2)):
        for c in wnids:
            (tmp_path / "src" / split / c).mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(20, 40, 2)
                Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
                    tmp_path / "src" / split / c / f"img{i}.png")
    (tmp_path / "classes.txt").write_text("# two of the three classes, in this order\nn003\nn001\n")
    assert read_class_list(tmp_path / "classes.txt") == ["n003", "n001"]
    counts = convert_image_folder(tmp_path / "src", tmp_path / "classes.txt", tmp_path / "out", size=16, resize=18,
                                  shard_size=4, log=lambda *a: None)
    assert counts == {"train": 6, "val": 4}
    tr = rl.load_dataset("npz", "train", folder=tmp_path / "out")
    assert tr.x.shape == (6, 3, 16, 16) and tr.x.dtype == torch.uint8
    assert tr.y.tolist() == [0, 0, 0, 1, 1, 1] and tr.classes == ("n003", "n001")
    assert len(rl.load_dataset("npz", "val", folder=tmp_path / "out")) == 4


# --------------------------------------------------------------------------------------------- the chapter


def test_recipes_name_registered_methods_and_models_and_state_their_source():
    from robustlib.models import MODELS
    for key, r in ch.RECIPES.items():
        assert r["method"] in rl.METHODS and r["model"] in MODELS, key
        assert r["source"] and r["part"] in (*ch.PARTS, "chapter") and key.split("/")[0] in ch.DATASETS, key
        assert "epoch_scale" not in r["hp"], f"{key}: epoch_scale follows from the compression rule"
        m = ch.recipe_method(key)
        assert m.derived_passes() is not None, f"{key}: the method states its cost"
        for which in r.get("rows", {}).values():
            assert which == "model" or int(which[3:]) < len(r["ema"]), key
    assert {v[0] for v in ch.ABLATIONS.values() if v} <= set(rl.METHODS.names())
    assert set(ch.PROFILES) == {"smoke", "quick", "cpu", "paper"}
    assert all(p.keys() == ch.PROFILES["paper"].keys() for p in ch.PROFILES.values())
    for p in ch.PROFILES.values():
        assert set(p["hp"]) <= set(ch.RECIPES) and set(p["ablation"]) <= set(ch.ABLATIONS)
        assert all(k in ch.RECIPES or k in ch.DATASETS for k in p["epochs"])


def test_profiles_compress_the_recipes_and_an_override_changes_one_row_only(tmp_path):
    from robustlib.training import run_fingerprint
    paper = ch.config("paper", 0, "cpu", None, str(tmp_path))
    quick = ch.config("quick", 0, "cpu", None, str(tmp_path))
    nuat = quick.specs["cifar10/NuAT"]
    assert nuat.config.epochs == 5 and nuat.hp["epoch_scale"] == pytest.approx(20)
    assert nuat.config.schedule(2.5) == pytest.approx(paper.specs["cifar10/NuAT"].config.schedule(50))
    assert quick.specs["cifar10/NuAT-WA"].config.ema == (ch.scaled_tau(0.9998, 100 * 765, 5 * 765),)
    assert paper.specs["cifar10/NuAT-WA"].config.ema == (0.9998,) and paper.specs["cifar10/NuAT"].hp["epoch_scale"] == 1
    assert "epoch_scale" not in paper.specs["cifar10/TRADES"].hp, "only methods that take it get epoch_scale"
    smoke = ch.config("smoke", 0, "cpu", None, str(tmp_path))
    assert smoke.specs["cifar10/PGD-AT"].hp["steps"] == 3 and smoke.specs["cifar10/ATF"].hp["replays"] == 4
    assert "m = 8 replays" in smoke.specs["cifar10/ATF"].source, "the source states the recipe, not the profile"
    lam2 = ch.config("smoke", 0, "cpu", None, str(tmp_path), overrides={"cifar10/NuAT": {"lam_max": 2.0}})
    assert lam2.specs["cifar10/NuAT"].make_method().lam_max == 2.0
    assert lam2.specs["cifar10/NuAT-WA"].hp == smoke.specs["cifar10/NuAT-WA"].hp
    assert lam2.specs["cifar10/NuAT"] == smoke.specs["cifar10/NuAT"].replace(hp={"lam_max": 2.0})
    assert any("overridden" in n for n in lam2.notes)
    data = rl.load_dataset("synthetic", "train", n=64)
    fp = [run_fingerprint(c.specs["cifar10/NuAT"].make_model(), c.specs["cifar10/NuAT"].make_method(), data,
                          c.specs["cifar10/NuAT"].config, None) for c in (smoke, lam2)]
    assert fp[0] != fp[1], "an override lands in a new checkpoint folder"
    with pytest.raises(rl.ConfigError, match="unknown rows.*valid: cifar10/Normal"):
        ch.config("smoke", 0, "cpu", None, str(tmp_path), overrides={"cifar10/NuATT": {"lam_max": 2.0}})
    with pytest.raises(rl.UnknownNameError, match="Valid NuAT part names"):
        ch.part_keys("nuatt")


def test_quick_plan_fits_ten_minutes_per_notebook(tmp_path):
    cfg = ch.config("smoke", 0, "cpu", None, str(tmp_path))
    minutes = ch.part_minutes(cfg)
    assert set(minutes.index) == set(ch.PARTS) | {"chapter"}
    assert (minutes["est. total min"] <= 10).all(), minutes
    specs = ch.config("quick", 0, "cpu", None, str(tmp_path)).specs
    assert {lab for sp in specs.values() if sp.extra["table"] == ch.T1 for lab in sp.rows} == set(
        methods("nuat", ch.T1)), "every ResNet-18 row is trained by some part"
    for key, sp in specs.items():   # each run's method is built with its own dataset's threat model
        m = sp.make_method()
        if hasattr(m, "eps") and sp.method != "trades":
            assert m.eps == pytest.approx(ch.DATASETS[sp.extra["dataset"]]["eps"]), key
    assert specs["cifar10/TRADES"].make_method().eps == pytest.approx(0.031)
    # the time model is the experiment layer's: the method's own N × images × epochs × the planning rule's seconds
    n, spp, _ = ch.planning(specs["cifar10/NuAT"])
    assert n == 49_000 and spp == ch.recipes.SECONDS_PER_PASS[("resnet18", 64)]
    assert ch.plan(cfg, "nuat").loc["cifar10/NuAT", "est. quick train min"] == pytest.approx(
        7 * (49_000 // 64 * 64) * 5 * spp / 60)


def test_a_part_runs_in_the_smoke_profile_and_writes_valid_results(tmp_path, data_root, monkeypatch):
    cfg = ch.config("smoke", 0, "cpu", str(data_root), str(tmp_path))
    rep = ch.report(cfg, "nuat")
    runs = ch.run_part(cfg, "nuat", rep)
    doc = results.load(rep.write())
    rows = {r["method"]: r for r in doc["rows"]}
    assert set(rows) == {"NuAT", "NuAT-WA"} and doc["part"] == "nuat"
    assert rows["NuAT"]["cost_passes"] == pytest.approx(7) and rows["NuAT"]["paper"]["aa"] == 49.24
    assert rows["NuAT-WA"]["model_used"].startswith("ema")
    assert rows["NuAT"]["recipe"] == ch.RECIPES["cifar10/NuAT"]["source"] and rows["NuAT"]["run"] == "cifar10/NuAT"
    chapter = ch.report(cfg)
    found = ch.gather(cfg, chapter)
    assert found.loc["nuat", "status"] == "2 rows"
    t1 = {r["method"]: r for r in chapter.rows if r["table"] == ch.T1}
    assert len(t1) == 14 and all(r["note"] for m, r in t1.items() if m not in ("NuAT", "NuAT-WA"))

    # the public function for other chapters reopens the finished run: nothing is trained again
    def no_training(*a, **k):
        raise AssertionError("trained() must reopen the finished run, not train")
    monkeypatch.setattr(NuAT, "loss", no_training)
    t = ch.trained(cfg.s, "NuAT-WA", progress=False)
    assert t.folder == runs["cifar10/NuAT-WA"].folder and t.spec.rows["NuAT-WA"] == rows["NuAT-WA"]["model_used"]
    assert t.model(t.spec.rows["NuAT-WA"]) is not None
    # and the evaluation the part made is cached beside the checkpoint: the same flags come back without attacking
    monkeypatch.setattr(ex, "evaluate", no_training)
    which = rows["NuAT-WA"]["model_used"]
    assert ch.evaluate(cfg, t, which, ch.suite(cfg, "cifar10")).acc == rows["NuAT-WA"]["metrics"]
    with pytest.raises(rl.UnknownNameError, match="Valid CIFAR-10 ResNet-18 row names"):
        ch.trained(cfg.s, "NuAT2")


def test_cpu_profile_keeps_the_paper_recipes_at_cpu_scale_and_states_every_substitution(tmp_path):
    cpu = ch.config("cpu", 0, "cpu", None, str(tmp_path))
    assert cpu.models["cifar10"] == {"width": 16} and cpu.n_train["cifar10"] is None
    assert cpu.specs["cifar10/PGD-AT"].hp["steps"] == 10, "the cost claim needs PGD-AT's own 10 steps"
    assert cpu.specs["cifar10/TRADES"].hp["steps"] == 5 and cpu.specs["cifar10/AWP"].hp["steps"] == 5
    assert {lab for sp in cpu.specs.values() if sp.extra["table"] == ch.T1 for lab in sp.rows} == set(
        methods("nuat", ch.T1)), "every ResNet-18 row is trained"
    attacks = ch.suite(cpu, "cifar10")
    assert attacks["pgd"].record == {"pgd20": 20, "pgd500": 50} and attacks["aa"].targets == 3
    note = " ".join(cpu.notes)
    for said in ("PGD-50", "GAMA-PGD-50", "APGD-T (3", "first 500 test images", "compare the differences"):
        assert said in note, said
    assert "first 500 test images" in cpu.table().loc["AutoAttack", "value"]
    # the plan of the cpu profile uses the cpu planning rule (MNIST: the profile's 19 000 training images)
    minutes = ch.part_minutes(cpu)
    assert "est. cpu train min" in minutes and set(minutes.index) == set(ch.PARTS) | {"chapter"}
    n, spp, _ = ch.planning(cpu.specs["mnist/NuAT"], "cpu")
    assert n == 19_000 and spp == ch.recipes.CPU_SECONDS_PER_PASS[("mnist_cnn", 64)]


@pytest.mark.slow
def test_autoattack_on_fewer_images_the_final_epoch_check_and_the_claims(tmp_path, data_root):
    """With ``aa_n`` AutoAttack runs on the first aa_n test images (its own interval), every other metric on all;
    FGSM-AT's row carries the PGD-20 flags of its *final-epoch* model; the claims are computed from the gathered rows
    (paired over the same images) and a claim whose rows did not run says so."""
    import dataclasses
    from robustlib import claims as cl
    from robustlib.stats import wilson_interval
    cfg = ch.config("smoke", 0, "cpu", str(data_root), str(tmp_path))
    cfg = dataclasses.replace(cfg, prof={**cfg.prof, "aa_n": 16, "epochs": {"cifar10": 2, "mnist": 1}})
    rep = ch.report(cfg, "single")
    runs = ch.run_part(cfg, "single", rep)
    rep.write()
    rows = {r["method"]: r for r in rep.rows}
    fgsm = rows["FGSM-AT"]
    assert len(fgsm["flags"]["aa"]) == 16 and len(fgsm["flags"]["pgd20"]) == cfg.n_test["cifar10"]
    aa = [c == "1" for c in fgsm["flags"]["aa"]]
    assert fgsm["ci"]["aa"] == pytest.approx(list(wilson_interval(sum(aa), 16)))
    assert fgsm["metrics"]["aa"] == pytest.approx(100 * sum(aa) / 16)
    # the final-epoch flags: the live model after the last epoch, attacked by PGD-20 (selected = last: the same)
    t = runs["cifar10/FGSM-AT"]
    last = [c == "1" for c in fgsm["flags"]["pgd20_last"]]
    _, _, test = ch.load_data(cfg)
    pgd = {"pgd20": rl.PGD(EPS, 2 / 255, 20, start="uniform", clip_start=False, record={"pgd20": 20})}
    torch.manual_seed(cfg.s.seed)
    direct = rl.evaluate(t.result.models()["model"].eval(), test, pgd, batch_size=cfg.eval_batch, progress=False)
    if t.selected_epoch("model") != t.result.epochs:
        assert last == direct.flags["pgd20"].tolist()
    assert fgsm["pgd20_last"] == pytest.approx(100 * sum(last) / len(last))
    chapter = ch.report(cfg)
    ch.gather(cfg, chapter)
    table = ch.claims(chapter).reset_index().set_index("test")
    co = table.loc["pgd20_last: FGSM-AT < 10 %"]
    assert co["verdict"] in (cl.SUPPORTED, cl.CONTRADICTED, cl.UNRESOLVED) and co["n"] == cfg.n_test["cifar10"]
    assert table.loc["aa: NuAT − FBF > 0 (paired)", "verdict"] == cl.MISSING, "NuAT's part did not run"
