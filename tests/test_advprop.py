"""AdvProp: the dual BN, the attack through the auxiliary BNs, the cost (2t + 4)N, the CIFAR-10-C-style corruptions,
and the chapter's pipeline in the smoke profile."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

import robustlib as rl
from robustlib import corruptions as corr
from robustlib.attacks import PGD
from robustlib.methods import METHODS
from robustlib.methods.advprop import AdvProp, DualBatchNorm2d, MixedAT, attacker, bn_route, dual_batchnorms, \
    dualize, is_dual
from conftest import tiny_resnet


def _bn_buffers(model, branch):
    return {f"{i}.{k}": v.clone() for i, m in enumerate(dual_batchnorms(model))
            for k, v in getattr(m, branch).named_buffers()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------------- dual BN


def test_dualize_doubles_only_the_batchnorms_and_shares_every_other_parameter():
    torch.manual_seed(0)
    plain = tiny_resnet()
    model = dualize(copy.deepcopy(plain))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert len(dual_batchnorms(model)) == n_bn and is_dual(model) and not is_dual(plain)
    bn_params = sum(p.numel() for m in plain.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters())
    assert rl.models.num_parameters(model) == rl.models.num_parameters(plain) + bn_params
    # every non-BN parameter exists once and is used by both routes; the two BN sets are distinct tensors
    non_bn = [n for n, _ in model.named_parameters() if ".main." not in n and ".aux." not in n]
    assert non_bn == [n for n, _ in plain.named_parameters() if "bn" not in n and "shortcut.1" not in n]
    m = dual_batchnorms(model)[0]
    assert m.main.weight is not m.aux.weight and m.main.running_mean is not m.aux.running_mean
    # both routes start equal to the plain network; gradients of a main-route loss reach shared weights + main BNs
    x = torch.rand(8, 3, 32, 32)
    plain.eval(), model.eval()
    with bn_route(model, "aux"):
        assert torch.allclose(model(x), plain(x), atol=1e-5)
    model.train()
    model(x).sum().backward()
    assert model.conv1.weight.grad is not None and m.main.weight.grad is not None and m.aux.weight.grad is None


def test_routes_keep_separate_running_statistics():
    torch.manual_seed(0)
    model = dualize(tiny_resnet()).train()
    x = torch.rand(16, 3, 32, 32)
    main0, aux0 = _bn_buffers(model, "main"), _bn_buffers(model, "aux")
    model(x)                                      # default route: main
    main1, aux1 = _bn_buffers(model, "main"), _bn_buffers(model, "aux")
    assert not _same(main0, main1) and _same(aux0, aux1)
    with bn_route(model, "aux"):
        model(x + 0.3)
    main2, aux2 = _bn_buffers(model, "main"), _bn_buffers(model, "aux")
    assert _same(main1, main2) and not _same(aux1, aux2)
    assert all(m.route == "main" for m in dual_batchnorms(model)), "bn_route must restore the route"


def test_split_route_equals_two_separate_passes():
    """[clean; adv] through main | aux BNs in one pass = clean through main, adv through aux (outputs and stats)."""
    torch.manual_seed(0)
    a = dualize(tiny_resnet()).train()
    b = copy.deepcopy(a)
    xc, xa = torch.rand(12, 3, 32, 32), torch.rand(12, 3, 32, 32) * 0.5
    with bn_route(a, "split", n_main=12):
        out = a(torch.cat([xc, xa]))
    oc = b(xc)
    with bn_route(b, "aux"):
        oa = b(xa)
    assert torch.allclose(out, torch.cat([oc, oa]), atol=1e-5)
    for branch in ("main", "aux"):
        sa, sb = _bn_buffers(a, branch), _bn_buffers(b, branch)
        assert all(torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6) for k in sa)


def test_bn_route_refuses_plain_models_and_bad_routes():
    with pytest.raises(rl.ConfigError, match="dualize"):
        with bn_route(tiny_resnet(), "aux"):
            pass
    with pytest.raises(rl.ConfigError, match="unknown BN route"):
        with bn_route(dualize(tiny_resnet()), "both"):
            pass


# ------------------------------------------------------------------------------------- attack through aux BNs


@pytest.mark.parametrize("bn_mode", ["eval", "train"])
def test_attack_through_aux_bns_leaves_every_bn_statistic_untouched_and_never_runs_the_main_bns(bn_mode, synthetic):
    torch.manual_seed(0)
    model = dualize(tiny_resnet(num_classes=10))
    model.train()
    x, y = synthetic[1].images()[:32], synthetic[1].y[:32]
    # make the two routes differ, as after training
    with torch.no_grad():
        for m in dual_batchnorms(model):
            m.aux.running_mean.add_(0.2)
            m.aux.running_var.mul_(2.0)
            m.aux.weight.mul_(0.5)
    main0, aux0 = _bn_buffers(model, "main"), _bn_buffers(model, "aux")
    calls = {"main": 0, "aux": 0}
    hooks = [getattr(m, br).register_forward_hook(lambda *a, br=br: calls.__setitem__(br, calls[br] + 1))
             for m in dual_batchnorms(model) for br in ("main", "aux")]
    atk = PGD(4 / 255, 1 / 255, 3, start="uniform", loss="targeted", bn_mode=bn_mode)
    torch.manual_seed(1)
    with bn_route(model, "aux"):
        x_aux = atk.perturb(model, x, y)
    for h in hooks:
        h.remove()
    assert calls["main"] == 0 and calls["aux"] > 0
    assert _same(main0, _bn_buffers(model, "main")) and _same(aux0, _bn_buffers(model, "aux"))
    assert model.training and all(m.route == "main" for m in dual_batchnorms(model))
    assert (x_aux - x).abs().max() <= 4 / 255 + 1e-6 and x_aux.min() >= 0 and x_aux.max() <= 1
    torch.manual_seed(1)
    x_main = atk.perturb(model, x, y)             # same random start and targets, through the main BNs
    assert not torch.equal(x_aux, x_main), "the attack did not depend on the auxiliary BNs"


def test_advprop_step_updates_both_bn_sets_and_averages_the_two_losses(synthetic):
    torch.manual_seed(0)
    model = dualize(tiny_resnet()).train()
    x, y = synthetic[0].images()[:16], synthetic[0].y[:16]
    main0, aux0 = _bn_buffers(model, "main"), _bn_buffers(model, "aux")
    method = AdvProp(eps=2 / 255)
    loss, logs = method.loss(model, x, y, None)
    assert not _same(main0, _bn_buffers(model, "main")) and not _same(aux0, _bn_buffers(model, "aux"))
    assert torch.allclose(loss, (logs["loss_clean"] + logs["loss_adv"]) / 2)
    assert method.steps == 3 and method.alpha == pytest.approx(1 / 255)   # the paper's rule at ε = 2/255
    loss.backward()
    m = dual_batchnorms(model)[0]
    assert m.main.weight.grad is not None and m.aux.weight.grad is not None


def test_attacker_rule_transposes_the_papers_schedule():
    assert attacker(1) == (1, pytest.approx(1 / 255))
    assert attacker(2) == (3, pytest.approx(1 / 255))
    assert attacker(4) == (5, pytest.approx(1 / 255))
    assert attacker(8) == (9, pytest.approx(1 / 255))
    with pytest.raises(rl.ConfigError):
        attacker(0)


def test_methods_are_registered_and_check_their_model():
    assert {"advprop", "mixed_at"} <= set(METHODS.names())
    data = rl.load_dataset("synthetic", "train", n=64)
    cfg = rl.TrainConfig(epochs=1, batch_size=32, augment=None)
    with pytest.raises(rl.ConfigError, match="dualize"):
        rl.Trainer(tiny_resnet(), AdvProp(), data, cfg, device="cpu", progress_bar=False)
    with pytest.raises(rl.ConfigError, match="plain model"):
        rl.Trainer(dualize(tiny_resnet()), MixedAT(), data, cfg, device="cpu", progress_bar=False)


@pytest.mark.parametrize("method,eps,t", [("advprop", 1, 1), ("advprop", 2, 3), ("mixed", 1, 1)])
def test_cost_meter_measures_2t_plus_4_passes(method, eps, t):
    """Attack: t forwards + t input backwards of B; training: forward and backward of the 2B batch ⇒ (2t + 4) N."""
    data = rl.load_dataset("synthetic", "train", n=64)
    b = 32
    model = dualize(tiny_resnet()) if method == "advprop" else tiny_resnet()
    m = (AdvProp if method == "advprop" else MixedAT)(eps=eps / 255)
    res = rl.train(model, m, data, rl.TrainConfig(epochs=1, batch_size=b, augment=None), device="cpu",
                   progress_bar=False)
    assert res.cost["model.backward"] == pytest.approx(t + 2)
    assert res.cost["model.forward"] == pytest.approx(t + 2)
    assert res.cost["total"] == pytest.approx(2 * t + 4)


def test_auxiliary_bns_hold_the_statistics_of_the_adversarial_images(synthetic):
    """One AdvProp step with BN momentum 1 (running statistics = the last batch's): the main BNs hold the clean
    half's statistics, the auxiliary BNs the adversarial half's, which the attack has shifted: the perturbation
    adds energy to the first convolution's output, so the first auxiliary BN's variance exceeds the main one's."""
    from robustlib.chapters.advprop import bn_layer_stats
    torch.manual_seed(0)
    model = dualize(tiny_resnet()).train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 1.0
    x, y = synthetic[0].images()[:64], synthetic[0].y[:64]
    AdvProp(eps=32 / 255, steps=1, alpha=32 / 255).loss(model, x, y, None)
    with torch.no_grad():
        clean = model.conv1(x)
    first = dual_batchnorms(model)[0].main
    assert torch.allclose(first.running_var, clean.var(dim=(0, 2, 3), unbiased=True), rtol=1e-4)
    stats = bn_layer_stats(model)
    assert stats[0]["var_aux"] > 1.1 * stats[0]["var_main"], stats[0]
    assert all(s["smd"] > 0 and s["log_var_ratio"] > 0 for s in stats)


# ----------------------------------------------------------------------------------------------- corruptions


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    x[0] = 0          # a black image (brightness's V = 0 case)
    x[1] = 255
    return x


@pytest.mark.parametrize("name", sorted(corr.CORRUPTIONS))
def test_every_corruption_is_deterministic_uint8_and_keeps_the_shape(name, images):
    for s in (1, 5):
        a = corr.corrupt(images, name, s, seed=3)
        b = corr.corrupt(images, name, s, seed=3)
        assert a.dtype == torch.uint8 and a.shape == images.shape
        assert torch.equal(a, b), "same images, corruption, severity and seed must give the same bytes"
        f = a.float() / 255
        assert f.min() >= 0 and f.max() <= 1


def test_random_corruptions_depend_on_the_seed_and_grow_with_severity(images):
    x = images[2:]
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "fog", "elastic_transform"):
        assert not torch.equal(corr.corrupt(x, name, 3, seed=0), corr.corrupt(x, name, 3, seed=1)), name
    for name in ("gaussian_noise", "contrast", "brightness", "defocus_blur", "zoom_blur", "jpeg_compression"):
        dist = [(corr.corrupt(x, name, s).float() - x.float()).abs().mean() for s in corr.SEVERITIES]
        assert dist[0] < dist[-1], name


def test_corruption_formulas_on_hand_made_images():
    grey = torch.full((1, 3, 8, 8), 100, dtype=torch.uint8)
    assert torch.equal(corr.corrupt(grey, "contrast", 3), grey)               # a flat image has no contrast
    assert torch.equal(corr.corrupt(grey, "defocus_blur", 5), grey)           # blurs keep flat images
    assert torch.equal(corr.corrupt(grey, "zoom_blur", 5), grey)
    bright = corr.corrupt(grey, "brightness", 5)                              # V = 100/255 + .3, hue kept
    assert int(bright[0, 0, 0, 0]) == int((100 / 255 + 0.3) * 255 + 1e-6)
    black = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    assert int(corr.corrupt(black, "brightness", 1).max()) == int(0.05 * 255)
    k = corr.disk_kernel(1.5, 0.1)
    assert k.sum().item() == pytest.approx(1.0) and torch.equal(k, k.flip(0)) and torch.equal(k, k.T)
    frac = corr.plasma_fractal(2, 32, 3.0, torch.Generator().manual_seed(0))
    assert frac.shape == (2, 32, 32) and frac.min() == 0 and frac.max() == 1


def test_corruption_suite_and_evaluation_reuse_the_evaluator(synthetic):
    torch.manual_seed(0)
    model = tiny_resnet().eval()
    test = synthetic[1].head(40)
    suite = corr.corruption_suite(test, ["gaussian_noise", "jpeg_compression"], (1, 5))
    assert set(suite) == {("gaussian_noise", 1), ("gaussian_noise", 5), ("jpeg_compression", 1),
                          ("jpeg_compression", 5)}
    assert all(torch.equal(d.y, test.y) and d.x.dtype == torch.uint8 for d in suite.values())
    tab = corr.evaluate_corruptions(model, suite, device="cpu")
    direct = rl.evaluate(model, suite[("gaussian_noise", 5)], device="cpu", progress=False)["clean"]
    assert tab.set_index(["corruption", "severity"]).loc[("gaussian_noise", 5), "accuracy"] == pytest.approx(direct)
    assert len(tab) == 4 and set(tab.family) == {"noise", "digital"} and (tab.n == 40).all()
    assert ((tab.ci_low <= tab.accuracy) & (tab.accuracy <= tab.ci_high)).all()
    with pytest.raises(rl.ConfigError, match="unknown corruption"):
        corr.corrupt(test.x, "snow", 1)


# ------------------------------------------------------------------------------------------- one step by hand


def test_advprop_loss_is_the_step_written_by_hand(synthetic):
    """The chapter notebook's by-hand step: targeted PGD through the auxiliary BNs in eval mode (uniform start, a
    random wrong label, signed steps towards it, projection), then [x; x_adv] through main | auxiliary BNs in train
    mode, (L_c + L_a)/2 — equal to AdvProp.loss from the same seed."""
    import torch.nn.functional as F
    torch.manual_seed(0)
    model = dualize(tiny_resnet()).train()
    with torch.no_grad():                          # make the routes differ, as after training
        for m in dual_batchnorms(model):
            m.aux.running_var.mul_(3.0)
            m.aux.weight.mul_(0.7)
    lib_model = copy.deepcopy(model)
    x, y = synthetic[0].images()[:24], synthetic[0].y[:24]
    method = AdvProp(eps=4 / 255, steps=2, alpha=2 / 255)
    eps, alpha, B = method.eps, method.alpha, len(x)
    torch.manual_seed(5)
    with bn_route(model, "aux"):
        model.eval()
        x_adv = (x + (torch.rand(x.shape) * 2 - 1) * eps).clamp(0, 1)
        target = None
        for _ in range(method.steps):
            x_adv.requires_grad_(True)
            logits = model(x_adv)
            if target is None:
                target = (y + torch.randint(1, logits.shape[1], y.shape)) % logits.shape[1]
            g, = torch.autograd.grad(-F.cross_entropy(logits, target, reduction="sum"), x_adv)
            x_adv = torch.minimum(torch.maximum(x_adv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
        model.train()
    with bn_route(model, "split", n_main=B):
        z = model(torch.cat([x, x_adv]))
    by_hand = (F.cross_entropy(z[:B], y) + F.cross_entropy(z[B:], y)) / 2
    torch.manual_seed(5)
    lib, logs = method.loss(lib_model, x, y, None)
    assert torch.allclose(by_hand, lib) and torch.allclose(F.cross_entropy(z[B:], y), logs["loss_adv"])
    torch.manual_seed(5)
    other, _ = AdvProp(eps=4 / 255, steps=2, alpha=2 / 255).loss(copy.deepcopy(model), x, y, None)
    assert not torch.allclose(other, lib), "the loss must depend on the BN statistics the step updated"


# ----------------------------------------------------------------------------------------- recipes and specs


def test_recipes_name_registered_methods_and_have_a_source():
    from robustlib.chapters import advprop as ch
    from robustlib.models import MODELS
    assert "resnet18" in MODELS.names()
    for label, r in ch.RECIPES.items():
        assert r["method"] in METHODS.names(), label
        assert r["source"] and r["epochs"] > 0 and r["batch"] > 0, label
        METHODS.build(r["method"], **r["hp"])                        # the hyperparameters are the method's own
    assert set(ch.LABELS.values()) == set(ch.RECIPES)
    assert ch.RECIPES["AdvProp"]["dual_bn"] and not ch.RECIPES["Mixed (shared BN)"]["dual_bn"]
    assert list(ch.recipe_table().index) == list(ch.RECIPES)
    keys = set(ch.PROFILES["paper"])
    for name, prof in ch.PROFILES.items():
        assert set(prof) == keys, name
        assert set(prof["widths"]) <= set(prof["pass_s"]), f"{name}: the time model needs every width"
        assert set(prof["hp"]) <= set(ch.RECIPES), name


def test_specs_follow_the_recipes_profiles_and_attacker_rule(tmp_path, data_root):
    from robustlib.chapters import advprop as ch
    cfg = ch.config("smoke", out_dir=str(tmp_path), data_dir=str(data_root))
    ap = cfg.specs[ch.alias("advprop", 8, 8, 0)]                     # the strength sweep's AdvProp at 8/255
    m = ap.make_method()
    assert isinstance(m, AdvProp) and (m.steps, m.alpha) == (9, pytest.approx(1 / 255)) and m.eps == 8 / 255
    assert is_dual(ap.make_model()) and not is_dual(cfg.specs[ch.alias("mixed", 8, 8, 0)].make_model())
    pgd = cfg.specs[ch.alias("pgdat", 8, 8, 1)]
    assert pgd.hp["steps"] == 2 and pgd.hp["alpha"] == 2.5 * (8 / 255) / 2          # smoke: PGD-2, α = 2.5ε/t
    assert pgd.config.seed == 1 and pgd.config.epochs == 1 and pgd.config.batch_size == 64
    assert m.derived_passes() == 2 * 9 + 4 and pgd.make_method().derived_passes() == 6
    paper = ch.make_spec("PGD-AT", ch.PROFILES["paper"], 64, 0)
    assert paper.config.epochs == 200 and paper.config.batch_size == 128 and paper.hp["steps"] == 7
    assert paper.config.schedule.describe()["name"] == "piecewise"
    # the smoke profile plans exactly the runs the chapter trained before the port (the smoke-identity baseline)
    assert {p: list(v) for p, v in cfg.parts.items()} == {
        "large": [f"advprop-{k}-s{s}" for s in (0, 1) for k in ("vanilla-w8", "mixed-w8-e1", "advprop-w8-e1")],
        "small": [f"advprop-{k}-s{s}" for s in (0, 1) for k in ("vanilla-w4", "mixed-w4-e1", "advprop-w4-e1")],
        "strength": ["advprop-advprop-w8-e8-s0"],
        "reference": ["advprop-pgdat-w8-e8-s0", "advprop-pgdat-w8-e8-s1", "advprop-mixed-w8-e8-s0"]}
    quick = ch.config("quick", out_dir=str(tmp_path), data_dir=str(data_root), device="cpu")
    runs = quick.runs()
    assert len(runs) == len({r.alias for r in runs}) == 32
    for w in quick.widths:
        for k in ("vanilla", "mixed", "advprop", "pgdat"):
            assert len([r for r in runs if r.extra["key"] == k and r.extra["width"] == w
                        and r.extra["eps"] == quick.headline_eps(k)]) == 3
    assert all(ch.part_plan(quick, p).minutes.sum() < 10 for p in ch.PARTS), "a part exceeds the 10-minute budget"


def test_overrides_change_a_rows_hyperparameters_and_fingerprint(tmp_path, data_root):
    from robustlib.chapters import advprop as ch
    from robustlib.training import run_fingerprint
    base = ch.config("smoke", out_dir=str(tmp_path), data_dir=str(data_root))
    over = ch.config("smoke", out_dir=str(tmp_path), data_dir=str(data_root),
                     overrides={"AdvProp": {"reduction": "sum"}})
    a = ch.alias("advprop", 4, 1, 0)
    assert over.specs[a].hp["reduction"] == "sum" and base.specs[a].hp["reduction"] == "mean"
    assert over.specs[a].describe() == base.specs[a].replace(hp={"reduction": "sum"}).describe()
    v = ch.alias("vanilla", 4, 0, 0)
    assert over.specs[v].describe() == base.specs[v].describe(), "an override of one row changes no other row"
    data = rl.load_dataset("synthetic", "train", n=64)
    fp = lambda sp: run_fingerprint(sp.make_model(), sp.make_method(), data, sp.config)  # noqa: E731
    assert fp(over.specs[a]) != fp(base.specs[a]) and fp(over.specs[v]) == fp(base.specs[v])
    assert any("overridden" in n for n in over.notes)
    with pytest.raises(rl.ConfigError, match="unknown rows.*valid: Vanilla"):
        ch.config("smoke", out_dir=str(tmp_path), data_dir=str(data_root), overrides={"AdvPro": {"eps": 0.1}})
    with pytest.raises(rl.UnknownNameError, match="Did you mean 'large'"):
        ch.report(base, "larg")


# --------------------------------------------------------------------------------------------------- chapter


def test_a_part_runs_end_to_end_and_the_chapter_rebuilds_it_from_the_caches(tmp_path, data_root, monkeypatch):
    from robustlib import experiment as ex
    from robustlib import results
    from robustlib.chapters import advprop as ch
    cfg = ch.config("smoke", out_dir=str(tmp_path), data_dir=str(data_root))
    cfg.profile = {**cfg.profile, "corruptions": ("gaussian_noise", "jpeg_compression"), "severities": (1,)}
    a = ch.alias("advprop", 4, 1, cfg.seeds[0])
    cfg.parts = {"strength": (a,)}
    train, test = ch.load_data(cfg)
    plan = ch.part_plan(cfg, "strength", train)
    sp = cfg.specs[a]
    assert not plan.trained.any() and plan.loc[a, "derived N"] == 6
    assert plan.loc[a, "minutes"] == pytest.approx(6 * 256 * 1 * cfg.pass_s[4] / 60 + cfg.eval_s / 60)
    rep = ch.report(cfg, "strength")
    recs = ch.run_part(cfg, "strength", rep, data=(train, test), log=lambda s: None)
    m = recs[0]["metrics"]
    assert all(m[k] is not None for k in ("clean", "clean_aux", "corruption_mean", "pgd20", "pgd20_aux"))
    assert recs[0]["formula_passes"] == 6 and abs(recs[0]["cost_passes"] - 6) <= 1 / sp.config.batch_size + 1e-9
    n_bn = rl.models.count_batchnorms(rl.build_model("resnet18", width=4, blocks=cfg.blocks))
    assert len(recs[0]["bn_stats"]) == n_bn and recs[0]["bn_stats"][0]["var_main"] > 0
    assert ch.part_plan(cfg, "strength", train).trained.all()
    folder = next(cfg.s.checkpoint_dir.glob(f"{a}-*"))
    assert len(list(folder.glob("eval-*.json"))) == 3, "PGD flags per BN route and the corruption flags"
    doc = results.load(rep.write())
    assert {(r["table"], r["method"]) for r in doc["rows"]} >= {("strength_w4", "AdvProp ε=1/255 (PGD-1)"),
                                                                 ("cost", "AdvProp (PGD-1)")}
    # the chapter reopens the run and reads every evaluation from the caches: nothing trains or evaluates again
    monkeypatch.setattr(rl.training.Trainer, "_run_epoch", lambda *a, **k: pytest.fail("trained again"))
    monkeypatch.setattr(ex, "evaluate", lambda *a, **k: pytest.fail("evaluated again"))
    monkeypatch.setattr(ch, "evaluate", lambda *a, **k: pytest.fail("corruptions evaluated again"))
    monkeypatch.setattr(ch.corr, "corruption_suite", lambda *a, **k: pytest.fail("suite generated again"))
    again = ch.collect(cfg, (train, test), log=lambda s: None)
    assert [r["metrics"] for r in again] == [r["metrics"] for r in recs]
    assert again[0]["corruptions"] == recs[0]["corruptions"] and again[0]["history"] == recs[0]["history"]
    chapter = ch.report(cfg)
    found = ex.gather(chapter, ch.PART_NOTEBOOKS)
    assert found.loc["strength", "status"] == f"{len(doc['rows'])} rows" and found.loc["large", "status"] == "missing"
    ch.add_rows(chapter, again, cfg)
    rows = {(r["table"], r["method"]) for r in chapter.rows}
    assert ("cifar10_w4", "AdvProp") in rows and ("cifar10_w8", "Vanilla") in rows      # missing rows kept
    assert ("cost", "AdvProp (PGD-1)") in rows
    results.validate(chapter.document())


def test_trained_gives_the_comparison_its_row_and_reopens_a_finished_run(tmp_path, data_root, monkeypatch):
    from robustlib.chapters import advprop as ch
    cfg = ch.config("smoke", out_dir=str(tmp_path), data_dir=str(data_root))
    t = ch.trained(cfg.s, "AdvProp", progress=False)
    assert t.spec.describe() == cfg.specs[ch.alias("advprop", cfg.large, cfg.eps, cfg.s.seed)].describe()
    assert t.spec.rows == {"AdvProp": "model"} and t.result.epochs == t.spec.config.epochs
    model = t.model(t.spec.rows["AdvProp"])
    x = rl.load_dataset("cifar10", "test", data_root).head(8).images()
    with torch.no_grad():
        main = model(x)
        with bn_route(model, "aux"):
            aux = model(x)
    assert is_dual(model) and not torch.allclose(main, aux), "the two BN routes must give different networks"
    monkeypatch.setattr(rl.training.Trainer, "_run_epoch", lambda *a, **k: pytest.fail("trained again"))
    again = ch.trained(cfg.s, "AdvProp", progress=False)
    assert again.folder == t.folder and again.fingerprint == t.fingerprint
    assert ch.make_spec("AdvProp", cfg.profile, cfg.large, 1).alias != t.spec.alias
    with pytest.raises(rl.UnknownNameError, match="Did you mean 'AdvProp'"):
        ch.trained(cfg.s, "Advprop")


def test_zoom_blur_docstring_states_the_factors_the_table_computes():
    """The module docstring lists the zoom factors per severity; they must be what ``np.arange(1, c, 0.01)`` of the
    parameter table gives (numpy's float range includes 1.06 and 1.11, not 1.16, 1.21, 1.26)."""
    import re
    import numpy as np
    from robustlib import corruptions as corr
    doc = " ".join(corr.__doc__.split())
    stated = re.findall(r"1\.00…(\d\.\d\d) \((?:(\d+) zooms|(\d+))\)", doc)
    assert len(stated) == 5, doc
    for c, (end, n1, n2) in zip(corr.PARAMS["zoom_blur"], stated):
        factors = np.arange(1, c, 0.01)
        assert f"{factors[-1]:.2f}" == end and len(factors) == int(n1 or n2)


# ------------------------------------------------------------------------------------------- cpu profile, claims


def test_cpu_profile_sizes_seeds_and_substitutions_are_stated(tmp_path, data_root):
    from robustlib.chapters import advprop as ch
    p = ch.PROFILES["cpu"]
    assert p["n_train"] is None and p["n_test"] == 1000 and p["widths"] == (8, 16) and p["blocks"] == (2, 2, 2, 2)
    assert p["seeds"] == 3 and p["epochs"] == 1 and p["batch"] == 128 and p["schedule"] == ("triangular", 0.1)
    assert p["hp"] == {"PGD-AT": {"steps": 5}} and p["pgdat_widths"] == (8, 16)
    assert p["strength_eps"] == (2, 4, 8) and p["strength_mixed_eps"] == (8,) and p["strength_seeds"] == 1
    assert p["strength_widths"] == (8, 16) and p["eval_pgd_steps"] == 10 and p["eval_eps"] == (1, 8)
    assert p["corruptions"] == ch.CORRUPTIONS and len(p["corruptions"]) == 13 and p["severities"] == (1, 2, 3, 4, 5)
    assert p["pass_s"] == {8: 2.4e-4, 16: 6e-4} and p["eval_s"] == {8: (50.0, 65.0), 16: (110.0, 150.0)}
    assert p["notebook_s"] == 60.0 and p["small_mixed_sweep_part"] == "strength"
    note = ch.NOTES["cpu"]
    for fact in ("two CPU cores", "all 50 000 CIFAR-10 training images", "widths 8 and 16", "one epoch per run",
                 "0 → 0.1 → 0 at batch 128", "three seeds per row at both widths", "PGD-AT with 5 steps instead of 7",
                 "ε = 2, 4, 8/255, Mixed at 8/255) with one seed", "PGD-10 instead of PGD-20",
                 "first 1 000 test images", "13 corruptions × 5 severities", "6e-4 s per pass", "not measured",
                 "seed-0 rows paired over the test images",
                 "CPU scale: compare the differences between rows, not the absolute numbers."):
        assert fact in note, fact
    cfg = ch.config("cpu", 0, "cpu", str(data_root), str(tmp_path))
    assert note in cfg.notes and cfg.seeds == (0, 1, 2) and (cfg.small, cfg.large) == (8, 16)
    runs = cfg.runs()
    assert len(runs) == len({r.alias for r in runs}) == 32
    for w in (8, 16):                                  # every headline row: three seeds at both widths
        for k in ("vanilla", "mixed", "advprop", "pgdat"):
            assert sorted(r.extra["seed"] for r in runs if r.extra["key"] == k and r.extra["width"] == w
                          and r.extra["eps"] == cfg.headline_eps(k)) == [0, 1, 2], (k, w)
    pgd = cfg.specs[ch.alias("pgdat", 16, 8, 0)]
    assert pgd.hp["steps"] == 5 and pgd.hp["alpha"] == pytest.approx(2.5 * (8 / 255) / 5)
    assert pgd.config.epochs == 1 and pgd.config.batch_size == 128 and pgd.model_kw["width"] == 16
    assert ch.alias("mixed", 8, 8, 0) in cfg.parts["strength"], "the narrow Mixed sweep run moved to part 33"
    assert "PGD-10" in cfg.table().loc["evaluation", "value"]
    # the other profiles keep their plan (the narrow Mixed sweep run stays in 'small')
    quick = ch.config("quick", out_dir=str(tmp_path), data_dir=str(data_root), device="cpu")
    assert ch.alias("mixed", 16, 8, 0) in quick.parts["small"]


def test_cpu_plan_every_notebook_fits_45_minutes(tmp_path, data_root):
    from robustlib.chapters import advprop as ch
    cfg = ch.config("cpu", 0, "cpu", str(data_root), str(tmp_path))
    minutes = ch.part_minutes(cfg)
    assert list(minutes.index) == list(ch.PARTS) + ["chapter"]
    assert (minutes["total min"] <= 45).all(), minutes
    assert (minutes["total min"] > 20).loc[list(ch.PARTS)].all(), "a part that plans far below the budget"
    # the time model: width-16 vanilla epoch = 2N × 49 920 images × 6e-4 s; a dual-BN run's evaluation costs more
    v, a = cfg.specs[ch.alias("vanilla", 16, 0, 0)], cfg.specs[ch.alias("advprop", 16, 1, 0)]
    plan = ch.part_plan(cfg, "large")
    assert plan.loc[v.alias, "minutes"] == pytest.approx((2 * 49_920 * 6e-4 + 110.0) / 60)
    assert plan.loc[a.alias, "minutes"] == pytest.approx((6 * 49_920 * 6e-4 + 150.0) / 60)
    for part in ch.PARTS:
        assert minutes.loc[part, "total min"] == pytest.approx(ch.part_plan(cfg, part).minutes.sum() + 1.0)


def _fake_record(ch, cfg, key, width, seed, n, clean, pgd, rot, clean_aux=None):
    on = lambda k: [i < k for i in range(n)]  # noqa: E731 — the first k images correct
    eps = cfg.headline_eps(key)
    flags = {"clean": on(clean), "pgd20": on(pgd), "pgd20_eps1": on(pgd), "corruption_rotated": on(rot)}
    if clean_aux is not None:
        flags.update({"clean_aux": on(clean_aux), "pgd20_aux": on(pgd), "pgd20_eps1_aux": on(pgd)})
    metrics = {k: None for k in ch.HEADLINE_METRICS}
    metrics.update({k: 100 * sum(f) / n for k, f in flags.items()})
    metrics["corruption_mean"] = metrics["corruption_rotated"]
    label = ch.LABELS[key]
    return {"key": ch.alias(key, width, eps, seed), "method": key, "label": label, "width": width, "eps": eps,
            "seed": seed, "attack_steps": 1, "params_plain": 1, "cost_passes": 2.0, "formula_passes": 2,
            "train_s": 1.0, "epochs": 1, "metrics": metrics, "flags": flags, "precision": {"amp": "fp32"}}


def test_claims_come_from_the_seed0_rows_per_image_flags(tmp_path, data_root):
    """The headline rows (means over seeds) carry the per-image flags of their seed-0 run; the claims pair those
    over the same test images (supported / contradicted / not resolvable), show the seed mean ± sd of the same
    difference, say 'not measured' for a missing row, and survive the results file."""
    from robustlib import results
    from robustlib.chapters import advprop as ch
    cfg = ch.config("smoke", 0, "cpu", str(data_root), str(tmp_path))
    assert (cfg.small, cfg.large, cfg.seeds) == (4, 8, (0, 1))
    n = 200
    R = lambda *a, **k: _fake_record(ch, cfg, *a, n=n, **k)  # noqa: E731
    records = [  # seed 1 first: the flags must still come from seed 0
        R("vanilla", 8, 1, clean=150, pgd=0, rot=100), R("advprop", 8, 1, clean=160, pgd=0, rot=100, clean_aux=140),
        R("vanilla", 8, 0, clean=150, pgd=0, rot=100), R("advprop", 8, 0, clean=170, pgd=0, rot=102, clean_aux=150),
        R("mixed", 8, 0, clean=120, pgd=5, rot=100), R("pgdat", 8, 0, clean=110, pgd=60, rot=90),
        R("vanilla", 4, 0, clean=150, pgd=0, rot=80), R("advprop", 4, 0, clean=100, pgd=0, rot=60, clean_aux=90),
        R("mixed", 4, 0, clean=100, pgd=0, rot=80)]          # no PGD-AT row at width 4
    rep = ch.report(cfg)
    ch.add_rows(rep, records, cfg)
    row = next(r for r in rep.rows if (r["table"], r["method"]) == ("cifar10_w8", "AdvProp"))
    assert row["flags_seed"] == 0 and row["flags"]["clean"] == "1" * 170 + "0" * 30 and row["n_seeds"] == 2
    assert row["metrics"]["clean"] == pytest.approx(82.5) and row["precision"] == {"amp": "fp32"}
    table = ch.claims(rep)
    v = dict(zip([c.key for c in ch.CLAIMS], table["verdict"]))
    assert v["aux_vs_vanilla_large"] == "supported"                 # 170 vs 150 on the same images
    assert v["aux_vs_mixed_large"] == v["mixed_below_vanilla_large"] == "supported"
    assert v["less_robust_than_at_large"] == "supported"            # 0 vs 60 under PGD
    assert v["corruptions_large"] == "not resolvable at this scale"  # 102 vs 100
    assert v["aux_vs_vanilla_small"] == "contradicted"              # 100 vs 150
    assert v["aux_vs_mixed_small"] == "not resolvable at this scale"  # 100 vs 100
    assert v["less_robust_than_at_small"] == "not measured"          # no PGD-AT row at width 4
    assert v["corruptions_small"] == "contradicted"                  # 60 vs 80
    first = table.loc[ch.CLAIMS[0].statement]
    assert first["width"] == 8 and first["n"] == n and first["paired on"] == f"seed 0, {n} images"
    assert first["ours"] == "+10.0" and first["seeds: a − b"] == "+7.50 ± 3.54 (2 seeds)"   # seeds: +10, +5
    assert table.loc[ch.CLAIMS[5].statement, "seeds: a − b"] == "-25.00 (1 seed)"
    assert table.loc[ch.CLAIMS[8].statement, "seeds: a − b"] == ""
    # the rows travel through the results file (as the chapter notebook gathers them from the parts)
    again = ch.report(cfg)
    again.rows = results.load(rep.write())["rows"]
    assert list(ch.claims(again)["verdict"]) == list(table["verdict"])
    assert set(ch.claims(ch.report(cfg))["verdict"]) == {"not measured"}
