"""The benchmark (short CPU variant): it measures what it claims, and the FLOP count shows that attack steps
compute input gradients only."""
from __future__ import annotations

import json

import pytest

from robustlib import bench


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
