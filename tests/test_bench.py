"""The benchmark (short CPU variant): it measures what it claims, and the FLOP count shows that attack steps
compute input gradients only."""
from __future__ import annotations

import json

import pytest

from robustlib import bench
from robustlib.errors import ConfigError, UnknownNameError


def test_short_cpu_benchmark(tmp_path):
    out = tmp_path / "bench.json"
    doc = bench.run("cpu", ["standard", "pgd10"], model_kwargs={"width": 8, "blocks": (1, 1, 1, 1)}, batches=2,
                    warmup=1, eval_images=16, autoattack=False, out=out, log=lambda s: None, eval_train_steps=2)
    saved = json.loads(out.read_text())
    assert saved["hardware"]["device"] == "cpu" and out.with_suffix(".md").read_text().startswith("Measured on")
    rows = {r["method"]: r for r in doc["methods"]}
    assert rows["standard"]["passes_per_sample"] == pytest.approx(2)
    assert rows["pgd10"]["passes_per_sample"] == pytest.approx(22)
    assert doc["pgd10_epoch_s"] > doc["standard_epoch_s"] > 0
    # forward 1F + backward 2F for standard training; PGD-10 adds 10 × (forward 1F + input-only backward 1F):
    # 23F / 3F ≈ 7.7 (weight gradients in the attack would make it 33F / 3F = 11)
    ratio = rows["pgd10"]["gflop_per_image"] / rows["standard"]["gflop_per_image"]
    assert 6.5 < ratio < 9.0, ratio
    assert doc["pgd20_1000_s"] > 0 and doc["peak_bf16_tflops"] is None


def test_unknown_benchmark_method_is_named():
    from robustlib.errors import UnknownNameError
    with pytest.raises(UnknownNameError, match="Valid benchmark method names"):
        bench.run("cpu", ["pgd7"], log=lambda s: None)


TINY = {"width": 4, "blocks": (1, 1, 1, 1)}


def test_reference_loop_trains_through_a_dataloader_of_pil_images():
    """The authors'-scripts loop really trains, and its batches come from a DataLoader whose Dataset turns PIL images
    into tensors through the scripts' torchvision transforms."""
    import PIL.Image
    import torch
    from torchvision import transforms

    loop = bench.reference_loop("nuat", device="cpu", model_kwargs=TINY, batch_size=8, steps=2)
    assert isinstance(loop.loader, torch.utils.data.DataLoader) and loop.loader.dataset is loop.dataset
    assert loop.workers == 0 and loop.precision == {"amp": "fp32", "channels_last": False}
    names = [type(t).__name__ for t in loop.dataset.transform.transforms]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "ToTensor"]
    assert loop.dataset.transform.transforms[0].padding == 4
    seen = []
    original = loop.dataset.transform

    def spy(img):
        seen.append(type(img))
        t = original(img)
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.shape == (3, 32, 32)
        return t

    loop.dataset.transform = transforms.Lambda(spy)
    assert isinstance(loop.dataset.image(0), PIL.Image.Image)
    x0, _ = loop.dataset[0]
    assert 0 <= float(x0.min()) and float(x0.max()) <= 1
    before = [p.detach().clone() for p in loop.model.parameters()]
    seen.clear()
    loop._it = iter(loop.loader)          # a fresh epoch through the spied transform
    seconds = loop.run(2)
    assert seconds > 0 and len(seen) == 16 and all(issubclass(t, PIL.Image.Image) for t in seen)
    assert len(loop.losses) == 2 and all(torch.isfinite(v) for v in loop.losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, loop.model.parameters()))
    assert loop.model.training                       # back in train mode after the eval-mode attack
    assert loop.model.layer1[0].extra_relu           # NuAT's official block on both sides


def test_reference_columns_and_ratio_from_the_two_measurements(tmp_path):
    out = tmp_path / "b.json"
    doc = bench.run("cpu", ["fbf"], model_kwargs=TINY, batches=2, warmup=1, reference=True, evaluation=False,
                    reference_workers=0, batch_size=16, out=out, log=lambda s: None)
    r = doc["methods"][0]
    assert r["images_per_s"] > 0 and r["reference_images_per_s"] > 0
    assert r["speedup"] == pytest.approx(r["images_per_s"] / r["reference_images_per_s"])
    assert doc["fbf_speedup"] == r["speedup"] and r["reference_precision"]["amp"] == "fp32"
    assert r["precision"]["amp"] in ("bf16", "fp32") and r["passes_per_sample"] == pytest.approx(4)
    assert "pgd20_1000_s" not in doc
    md = out.with_suffix(".md").read_text()
    assert "reference images/s" in md and f"{r['speedup']:.2f}×" in md and "Evaluation" not in md
    assert bench.speed_ratio(300.0, 100.0) == pytest.approx(3.0)


def test_unknown_reference_method_is_named():
    from robustlib.errors import UnknownNameError
    with pytest.raises(UnknownNameError, match="Valid reference method names: fbf, nuat, standard"):
        bench.reference_loop("pgd10", device="cpu")
    with pytest.raises(UnknownNameError, match="Valid benchmark method names: .*fd_gradreg"):
        bench.run("cpu", ["pgd11"], reference=True, evaluation=False, log=lambda s: None)


def test_with_the_reference_a_method_without_one_is_timed_alone(tmp_path):
    doc = bench.run("cpu", ["pgd10", "fbf"], model_kwargs=TINY, batches=1, warmup=1, reference=True,
                    evaluation=False, reference_workers=0, batch_size=8, out=tmp_path / "b.json", log=lambda s: None)
    rows = {r["method"]: r for r in doc["methods"]}
    assert "speedup" not in rows["pgd10"] and rows["fbf"]["speedup"] > 0 and "pgd10_speedup" not in doc
    assert "| pgd10 |" in (tmp_path / "b.md").read_text()


# the cost meter's N per sample of every benchmarked method, as each method's docstring states it
PASSES = {"standard": 2, "fgsm_at": 4, "rfgsm_at": 4, "fbf": 4, "rmgm": 8, "gat": 7, "nuat": 7, "free_at": 16,
          "pgd10": 22, "trades10": 25, "advprop": 6, "fd_gradreg": 5}


@pytest.mark.parametrize("method", sorted(PASSES) + ["awp10"])
def test_every_benchmarked_method_trains_and_meters_its_cost(method):
    r = bench.bench_training(method, device="cpu", model_kwargs=TINY, batches=1, warmup=1, batch_size=8)
    if method == "awp10":    # TRADES-10 plus AWP's weight perturbation (on from the first batch here)
        assert r["passes_per_sample"] > PASSES["trades10"]
    else:
        assert r["passes_per_sample"] == pytest.approx(PASSES[method])
    # Free-AT replays each batch 8 times: images count once, so an epoch is a real one (8 replays of each batch)
    assert r["images_per_s"] > 0 and r["timed_batches"] == 1
    assert r["precision"]["amp"] == ("fp32" if method == "fd_gradreg" else r["precision"]["amp"])


def test_cpu_peak_is_a_measured_matmul_ceiling_that_training_stays_below(tmp_path):
    import torch
    p = bench.matmul_peak("cpu", torch.float32, n=256, seconds=0.2)
    assert 0.001 < p < 100
    doc = bench.run("cpu", ["standard"], model_kwargs=TINY, batches=2, warmup=1, evaluation=False, batch_size=32,
                    out=tmp_path / "b.json", log=lambda s: None)
    r = doc["methods"][0]
    assert doc["measured_peaks_tflops"]["fp32"] > 0 and 0 < r["peak_fraction"] < 1
    assert r["peak_tflops"] == doc["measured_peaks_tflops"].get(r["precision"]["amp"])
    assert "measured matmul ceiling" in (tmp_path / "b.md").read_text()
    with pytest.raises(ConfigError, match="n ≥ 64"):
        bench.matmul_peak("cpu", n=8)


def test_growth_exponent_reads_the_power_law():
    assert bench.growth([1, 2, 4], [3, 6, 12]) == pytest.approx(1.0)
    assert bench.growth([8, 16, 32], [1, 4, 16]) == pytest.approx(2.0)
    assert bench.growth([100, 200], [5, 5]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError, match="two distinct points"):
        bench.growth([4, 4], [1, 2])


def test_scaling_sweep_measures_every_axis_and_attacks_every_image(tmp_path):
    axes = {"width": (4, 8), "batch": (8, 16), "images": (8, 16), "eval_batch": (4, 8)}
    middle = {"width": 4, "batch": 8, "images": 8, "eval_batch": 8}
    doc = bench.run_scaling("cpu", methods=("standard",), axes=axes, middle=middle, batches=1, warmup=1,
                            attack_steps=2, out=tmp_path / "s.json", log=lambda s: None)
    trained = {(r["width"], r["batch"]) for r in doc["train"]}
    assert trained == {(4, 8), (8, 8), (4, 16)}                   # the middle point once, each axis's other value
    attacked = {(r["width"], r["images"], r["eval_batch"]) for r in doc["attacks"]}
    assert attacked == {(4, 8, 8), (8, 8, 8), (4, 16, 8), (4, 8, 4)}
    assert {r["attack"] for r in doc["attacks"]} == {"pgd", "gama", "apgd_ce"}
    assert all(r["attacked_fraction"] == 1.0 and r["seconds"] > 0 for r in doc["attacks"])
    frames = bench.scaling_frames(doc)
    assert set(frames) == {"train_width", "train_batch", "attack_width", "attack_images", "attack_eval_batch"}
    assert list(frames["attack_images"].index) == [8, 16, "growth exponent"]
    md = (tmp_path / "s.md").read_text()
    assert "growth exponent" in md and "Attacks against the test images" in md
    assert (tmp_path / "s.png").stat().st_size > 1000
    with pytest.raises(UnknownNameError, match="scaling axis"):
        bench.scaling("cpu", axes={"depth": (1, 2)})
