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


# --------------------------------------------------------------------------------------------------- chapter


def test_chapter_plans_every_row_and_runs_a_part_in_the_smoke_profile(tmp_path, data_root):
    from robustlib import results
    from robustlib.chapters import advprop as ch
    cfg = ch.config("smoke", out_dir=str(tmp_path), data_dir=str(data_root))
    runs = cfg.runs()
    assert len(runs) == len({r.key for r in runs}), "a run is planned twice"
    for w in cfg.widths:
        for m in ("vanilla", "mixed", "advprop"):
            assert len([r for r in runs if r.method == m and r.width == w and r.eps in (0, cfg.eps)]) >= 2
    assert all(len(v) for v in cfg.parts.values())
    # run a one-model part end to end: train, evaluate both branches and corruptions, record, aggregate, write
    cfg.parts = {"strength": (ch.Run("advprop", 4, cfg.seeds[0], 1),)}
    cfg.corruptions, cfg.severities = ("gaussian_noise", "jpeg_compression"), (1,)
    rep = ch.report(cfg, "strength")
    recs = ch.run_part(cfg, "strength", rep, log=lambda s: None)
    m = recs[0]["metrics"]
    assert {"clean", "clean_aux", "corruption_mean", "pgd20", "pgd20_aux"} <= set(m)
    assert all(m[k] is not None for k in ("clean", "clean_aux", "corruption_mean", "pgd20", "pgd20_aux"))
    assert recs[0]["formula_passes"] == 6 and abs(recs[0]["cost_passes"] - 6) <= 1 / cfg.train.batch_size + 1e-9
    n_bn = rl.models.count_batchnorms(rl.build_model("resnet18", width=4, blocks=cfg.blocks))
    assert len(recs[0]["bn_stats"]) == n_bn and recs[0]["bn_stats"][0]["var_main"] > 0
    doc = results.load(rep.write())
    assert doc["runs"][0]["key"] == recs[0]["key"]
    again = ch.gather(cfg, log=lambda s: None)          # read back from advprop__strength.json, nothing retrained
    assert [r["key"] for r in again] == [recs[0]["key"]]
    chapter = ch.report(cfg)
    ch.add_rows(chapter, again, cfg)
    rows = {(r["table"], r["method"]) for r in chapter.rows}
    assert ("cifar10_w4", "AdvProp") in rows and ("cifar10_w8", "Vanilla") in rows      # missing rows kept
    assert ("cost", "AdvProp (PGD-1)") in rows
    results.validate(chapter.document())


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
