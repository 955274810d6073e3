"""The experiment layer: fingerprint-named run folders, reuse, one evaluation cache, gather, the time model."""
from __future__ import annotations

import json

import pytest
import torch

import robustlib as rl
from robustlib import experiment as ex
from robustlib.errors import ConfigError, UnknownNameError
from robustlib.report import Report


def _spec(**kw):
    base = dict(alias="t-standard", label="Standard", method="standard", hp={}, model="resnet18",
                model_kw={"width": 4, "blocks": (1, 1, 1, 1)},
                config=rl.TrainConfig(epochs=1, batch_size=32, augment=None, max_batches=2,
                                      schedule={"name": "constant", "lr": 0.05}))
    base.update(kw)
    return ex.RunSpec(**base)


@pytest.fixture(scope="module")
def small():
    return rl.load_dataset("synthetic", "train", n=128), rl.load_dataset("synthetic", "test", n=48)


def test_same_spec_reuses_its_folder_and_trains_nothing(tmp_path, small):
    a = ex.train(_spec(), small[0], tmp_path, progress=False)
    assert a.folder.name == f"t-standard-{a.fingerprint}" and (a.folder / "last.pt").exists()
    stamp = (a.folder / "last.pt").stat().st_mtime_ns
    b = ex.train(_spec(), small[0], tmp_path, progress=False)
    assert b.folder == a.folder and (b.folder / "last.pt").stat().st_mtime_ns == stamp
    for p, q in zip(a.result.model.parameters(), b.result.model.parameters()):
        assert torch.equal(p, q)
    assert json.loads((a.folder / "spec.json").read_text())["method"] == "standard"


def test_changed_hyperparameter_lands_in_a_new_folder(tmp_path, small):
    a = ex.train(_spec(method="fbf", hp={"eps": 8 / 255}), small[0], tmp_path, progress=False)
    b = ex.train(_spec(method="fbf").replace(hp={"eps": 4 / 255}), small[0], tmp_path, progress=False)
    assert a.folder != b.folder and a.folder.exists() and b.folder.exists()


def test_bad_specs_name_what_is_valid():
    with pytest.raises(UnknownNameError, match="nuat"):
        _spec(method="no-such-method")
    with pytest.raises(ConfigError, match="alias"):
        _spec(alias="a b/c")
    with pytest.raises(ConfigError, match="Selector"):
        ex.train(_spec(selector="robust"), rl.load_dataset("synthetic", "train", n=64), "/tmp/unused")


def test_evaluation_is_cached_and_equals_a_fresh_one(tmp_path, small):
    run = ex.train(_spec(), small[0], tmp_path, progress=False)
    attacks = {"fgsm": rl.FGSM(8 / 255), "pgd": rl.PGD(8 / 255, 2 / 255, 3)}
    first = ex.evaluate_cached(run, attacks, small[1], batch_size=16, progress=False)
    files = list(run.folder.glob("eval-*.json"))
    assert len(files) == 1 and "cached" not in first.meta
    again = ex.evaluate_cached(run, attacks, small[1], batch_size=16, progress=False)
    assert again.meta["cached"] == str(files[0])
    assert again.flags.equals(first.flags)
    fresh = rl.evaluate(run.model(), small[1], attacks, batch_size=16, device="cpu", progress=False)
    assert fresh.flags.equals(first.flags)  # the cache stores what a fresh, seeded evaluation gives


def test_cache_key_follows_attacks_images_and_checkpoint(tmp_path, small):
    run = ex.train(_spec(), small[0], tmp_path, progress=False)
    ex.evaluate_cached(run, {"fgsm": rl.FGSM(8 / 255)}, small[1], progress=False)
    ex.evaluate_cached(run, {"fgsm": rl.FGSM(4 / 255)}, small[1], progress=False)
    ex.evaluate_cached(run, {"fgsm": rl.FGSM(8 / 255)}, small[1], n=32, progress=False)
    assert len(list(run.folder.glob("eval-*.json"))) == 3
    longer = ex.train(_spec(config=rl.TrainConfig(epochs=2, batch_size=32, augment=None, max_batches=2,
                                                   schedule={"name": "constant", "lr": 0.05})),
                      small[0], tmp_path, progress=False)
    r = ex.evaluate_cached(longer, {"fgsm": rl.FGSM(8 / 255)}, small[1], progress=False)
    assert "cached" not in r.meta  # another checkpoint: evaluated afresh


def test_gather_copies_part_rows_of_the_same_profile_only(tmp_path):
    part = Report("nuat", "smoke", tmp_path, "cifar10", 10, part="single")
    part.add_row("t", "FBF", {"clean": 50.0}, paper={})
    part.write()
    other = Report("nuat", "quick", tmp_path / "q", "cifar10", 10, part="nuat")
    other.add_row("t", "NuAT", {"clean": 50.0}, paper={})
    other.write()
    (tmp_path / "nuat__nuat.json").write_text((tmp_path / "q" / "nuat__nuat.json").read_text())
    chapter = Report("nuat", "smoke", tmp_path, "cifar10", 10)
    found = ex.gather(chapter, {"single": "12_nuat__single", "nuat": "11_nuat__nuat", "mnist": "16_nuat__mnist"})
    assert [r["method"] for r in chapter.rows] == ["FBF"]
    assert found.loc["nuat", "status"] == "other profile (quick)" and found.loc["mnist", "status"] == "missing"


def test_time_model_is_derived_passes_times_measured_seconds():
    s = _spec(method="pgd_at", hp={"steps": 5}, config=rl.TrainConfig(epochs=3, batch_size=100))
    assert s.make_method().derived_passes() == 12
    assert ex.estimate_seconds(s, 1050, 1e-3, eval_seconds=5.0) == pytest.approx(12 * 1000 * 3 * 1e-3 + 5.0)


def test_source_shows_the_installed_code_highlighted():
    from robustlib.attacks.core import signed_step
    from robustlib.show import source
    s = source(signed_step)
    assert str(s).startswith("def signed_step(") and "robustlib.attacks.core.signed_step" in s.title
    assert "<span" in s._repr_html_()
    assert str(source(rl.PGD, start="def _run")).startswith("def _run(")
    with pytest.raises(ValueError, match="does not occur"):
        source(signed_step, start="no such text")


def test_other_evaluations_share_the_cache(tmp_path, small):
    import numpy as np
    run = ex.train(_spec(), small[0], tmp_path, progress=False)
    calls = []

    def compute():
        calls.append(1)
        return {"dist": np.array([0.5, 0.25], dtype=np.float32), "n": 2}
    a = ex.cached(run, {"budget": "pgd-3"}, compute)
    b = ex.cached(run, {"budget": "pgd-3"}, compute)
    assert len(calls) == 1 and b["n"] == 2 and b["dist"].dtype == np.float32
    assert np.array_equal(a["dist"], b["dist"])
    ex.cached(run, {"budget": "pgd-5"}, compute)
    assert len(calls) == 2


def test_recipe_table_writes_budgets_as_a_reader_does():
    df = ex.recipe_frame({"PGD-AT": {"method": "pgd_at", "hp": {"eps": 8 / 255, "steps": 10}, "milestones": (100, 150),
                                     "weight_decay": 5e-4}})
    assert df.loc["PGD-AT", "hp"] == "eps = 8/255, steps = 10" and df.loc["PGD-AT", "milestones"] == "100, 150"
    assert df.loc["PGD-AT", "weight_decay"] == "0.0005"


def test_a_tag_keeps_evaluations_of_the_same_weights_run_differently_apart(tmp_path, small):
    run = ex.train(_spec(), small[0], tmp_path, progress=False)
    atk = {"fgsm": rl.FGSM(8 / 255)}
    ex.evaluate_cached(run, atk, small[1], progress=False)
    tagged = ex.evaluate_cached(run, atk, small[1], model=run.model(), tag="route=aux", progress=False)
    assert "cached" not in tagged.meta and len(list(run.folder.glob("eval-*.json"))) == 2


def test_the_same_run_under_another_alias_reuses_the_first_folder(tmp_path, small):
    a = ex.train(_spec(alias="ch0-standard"), small[0], tmp_path, progress=False)
    b = ex.train(_spec(alias="abnn-no-defense"), small[0], tmp_path, progress=False)
    assert b.folder == a.folder and len(list(tmp_path.iterdir())) == 1


def test_an_attacks_cache_key_does_not_change_once_it_has_run():
    aa = rl.AutoAttack(8 / 255, version="custom", attacks=["apgd-ce"], apgd_budget=(2, 1))
    before = repr(aa)
    aa.warnings.append("some warning AutoAttack logged")
    assert repr(aa) == before
