"""The gradient-masking checklist passes an honest model and catches a model whose gradients are masked."""
from __future__ import annotations

import torch
import torch.nn as nn

from robustlib import audit


class GradientMasked(nn.Module):
    """Quantises its input with round(): the function barely changes, but every input gradient is zero."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(torch.round(x * 16) / 16)


def test_honest_model_passes_and_masked_model_fails(standard_model, synthetic):
    data = synthetic[1].head(100)
    ok, curve = audit.eps_to_zero("standard", standard_model, data, eps_255=(8, 64, 128), steps=10, device="cpu")
    assert ok.passed and curve.accuracy.is_monotonic_decreasing
    masked = GradientMasked(standard_model).eval()
    bad, _ = audit.eps_to_zero("masked", masked, data, eps_255=(8, 64, 128), steps=10, device="cpu")
    assert bad.passed is False and "128/255" in bad.detail

    sr = audit.steps_and_restarts("standard", standard_model, data, steps=(5, 10), restarts=2, device="cpu")
    assert sr.passed

    white = sr.numbers["pgd10"]
    bb = audit.black_box("standard", standard_model, data, white, source=None, square=False, device="cpu")
    assert bb.passed is None  # nothing to compare
    masked_white = audit.steps_and_restarts("masked", masked, data, steps=(5, 10), restarts=1,
                                            device="cpu").numbers["pgd10"]
    transfer = audit.black_box("masked", masked, data, masked_white, source=standard_model, square=False,
                               device="cpu")
    assert transfer.passed is False, transfer.detail  # transferred examples beat the (useless) white-box attack


def test_autoattack_flags_and_table():
    c1 = audit.autoattack_flags("a", [])
    c2 = audit.autoattack_flags("b", ["it seems to be a randomized defense! Please use version='rand'. See x"])
    assert c1.passed and c2.passed is False and "randomized" in c2.detail
    t = audit.table([c1, c2])
    assert t.loc["b", "no AutoAttack warnings"] == "FAIL"


class BatchCentred(nn.Module):
    """Batch-dependent toy: logits minus three times the batch mean (alone: −2 × the logits, mostly wrong)."""

    batch_dependent = True

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        z = self.net(x)
        return z - 3 * z.mean(0, keepdim=True)


def test_square_on_a_batch_dependent_model_is_compared_with_white_box_at_batch_size_one(standard_model, synthetic):
    """Square (through AutoAttack) attacks a batch-dependent model's batch-size-1 function; comparing it with the
    white-box accuracy in evaluation batches would compare two functions (here a false FAIL)."""
    toy = BatchCentred(standard_model).eval()
    data = synthetic[1].head(40)
    bb = audit.black_box("toy", toy, data, 50.0, source=None, square=True, square_queries=5, white_steps=2,
                         device="cpu", batch_size=20)
    n = bb.numbers
    assert n["square"] < 50.0 - 1 and n["white_box_b1"] <= n["square"] + 1   # at batch size 1 the toy is weak
    assert bb.passed, bb.detail
