"""A gradient-masking checklist, after Carlini et al. (2019), "On evaluating adversarial robustness".

A defence whose robustness comes from broken gradients rather than from a robust function shows tell-tale signs.
Each check below returns a :class:`Check` (pass / fail with the numbers behind it):

* :func:`eps_to_zero` — accuracy must fall to (near) zero as ε grows: with ε = 128/255 in ℓ∞ every image can be
  moved halfway to grey, so a model still "robust" there is hiding its gradients.
* :func:`steps_and_restarts` — more PGD steps and more random restarts must never raise robust accuracy.
* :func:`black_box` — black-box attacks (a transfer attack from another model, and the gradient-free Square attack)
  must not beat the white-box attack on the same function: if they do, the white-box gradients were misleading (on
  a batch-dependent model Square attacks the batch-size-1 function and is compared with a white-box attack there).
* :func:`autoattack_flags` — AutoAttack's own warnings (randomised or dynamic model, outputs that are not logits,
  Square beating the gradient-based attacks).

Tolerances: accuracies are measured on the same images, so a check fails only when a supposedly weaker attack beats
a stronger one by more than ``tol`` percentage points (default 1.0), which is larger than the run-to-run jitter of a
random start on 1 000 images.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Mapping, Sequence

import pandas as pd
import torch
import torch.nn as nn

from .attacks import PGD, AutoAttack, predict
from .data import ArrayDataset
from .evaluation import batch_dependent, batch_size_one, evaluate


@dataclass
class Check:
    defence: str
    check: str
    passed: bool | None               # None: not applicable / not run
    detail: str
    numbers: dict = field(default_factory=dict)

    def row(self) -> dict:
        d = asdict(self)
        d["result"] = {True: "pass", False: "FAIL", None: "n/a"}[self.passed]
        return d


def eps_to_zero(name: str, model: nn.Module, data: ArrayDataset, *, eps_255: Sequence[int] = (8, 16, 32, 64, 128),
                steps: int = 50, threshold: float = 2.0, device="auto", batch_size: int = 500) -> tuple[Check,
                                                                                                      pd.DataFrame]:
    """PGD-``steps`` accuracy over growing ε; passes if it is ≤ ``threshold`` % at the largest ε."""
    rows = []
    for e in eps_255:
        eps = e / 255
        torch.manual_seed(0)
        acc = evaluate(model, data, {"pgd": PGD(eps, eps / 4, steps)}, batch_size=batch_size, device=device,
                       progress=False).accuracies()
        rows.append({"defence": name, "eps_255": e, "accuracy": acc["pgd"], "clean": acc["clean"]})
    df = pd.DataFrame(rows)
    last = df.iloc[-1]["accuracy"]
    ok = bool(last <= threshold)
    return Check(name, "accuracy → 0 as ε grows", ok,
                 f"PGD-{steps} accuracy {last:.1f} % at ε = {eps_255[-1]}/255 (pass if ≤ {threshold:g} %)",
                 {f"eps{e}": a for e, a in zip(df.eps_255, df.accuracy)}), df


def steps_and_restarts(name: str, model: nn.Module, data: ArrayDataset, *, eps: float = 8 / 255,
                       steps: Sequence[int] = (10, 20, 100), restarts: int = 5, tol: float = 1.0, device="auto",
                       batch_size: int = 500) -> Check:
    """PGD accuracy at several step counts (snapshots of one run) and with ``restarts`` restarts of the longest."""
    torch.manual_seed(0)
    record = {f"pgd{s}": s for s in steps}
    longest = max(steps)
    res = evaluate(model, data, {"pgd": PGD(eps, 2 / 255, longest, record=record),
                                 "restarts": PGD(eps, 2 / 255, longest, restarts=restarts)},
                   batch_size=batch_size, device=device, progress=False).accuracies()
    accs = [res[f"pgd{s}"] for s in steps]
    rise_steps = max((b - a for a, b in zip(accs, accs[1:])), default=0.0)
    rise_restarts = res["restarts"] - res[f"pgd{longest}"]
    ok = bool(rise_steps <= tol and rise_restarts <= tol)
    detail = (", ".join(f"PGD-{s} {a:.1f} %" for s, a in zip(steps, accs))
              + f", PGD-{longest} × {restarts} restarts {res['restarts']:.1f} %")
    return Check(name, "more steps and restarts never help", ok, detail,
                 {**{f"pgd{s}": a for s, a in zip(steps, accs)}, "restarts": res["restarts"]})


def transfer_accuracy(model: nn.Module, source: nn.Module, data: ArrayDataset, *, eps: float = 8 / 255,
                      steps: int = 20, device="auto", batch_size: int = 500) -> float:
    """Accuracy of ``model`` on PGD examples crafted on ``source`` (clean-and-adversarial correct, in %)."""
    from .utils import resolve_device
    dev = resolve_device(device)
    model, source = model.to(dev), source.to(dev)
    ok, n = 0, 0
    torch.manual_seed(0)
    x_all, y_all = data.images(), data.y
    for i in range(0, len(data), batch_size):
        x, y = x_all[i:i + batch_size].to(dev), y_all[i:i + batch_size].to(dev)
        x_adv = PGD(eps, 2 / 255, steps).perturb(source, x, y)
        ok += int(((predict(model, x) == y) & (predict(model, x_adv) == y)).sum())
        n += len(y)
    return 100.0 * ok / max(n, 1)


def black_box(name: str, model: nn.Module, data: ArrayDataset, white_box: float, *, source: nn.Module | None,
              source_name: str = "undefended model", eps: float = 8 / 255, square: bool = True, tol: float = 1.0,
              device="auto", batch_size: int = 500, seed: int = 0, square_queries: int = 5000,
              transfer_steps: int = 20, square_white_box: float | None = None, white_steps: int = 100) -> Check:
    """Transfer (PGD-``transfer_steps`` on ``source``) and Square (``square_queries`` queries) must not beat the
    white-box accuracy.

    Each black-box attack is compared with a white-box attack on the same function. The transfer examples are
    scored like the white-box ones, in the evaluation batch, against ``white_box``. Square runs through AutoAttack,
    which on a :func:`~robustlib.evaluation.batch_dependent` model attacks and scores its batch-size-1 function; there
    it is compared with ``square_white_box``, the white-box accuracy of that function — measured here, unless given,
    with PGD-``white_steps`` (step 2/255, one uniform start) crafted and scored at batch size 1. For a
    batch-independent model both are ``white_box``."""
    numbers = {"white_box": white_box}
    parts = []
    dependent = batch_dependent(model)
    if source is not None:
        numbers["transfer"] = transfer_accuracy(model, source, data, eps=eps, steps=transfer_steps, device=device,
                                                batch_size=batch_size)
        parts.append(f"transfer (PGD-{transfer_steps}) from the {source_name} {numbers['transfer']:.1f} %")
    if square:
        aa = AutoAttack(eps, version="custom", attacks=["square"], square_queries=square_queries, seed=seed,
                        batch_size=batch_size)
        numbers["square"] = evaluate(model, data, {"square": aa}, batch_size=batch_size, device=device,
                                     progress=False).accuracies()["square"]
        parts.append(f"Square ({square_queries} queries) {numbers['square']:.1f} %")
        if dependent:
            if square_white_box is None:
                torch.manual_seed(0)
                square_white_box = evaluate(batch_size_one(model), data, {"pgd": PGD(eps, 2 / 255, white_steps)},
                                            batch_size=batch_size, device=device, progress=False)["pgd"]
            numbers["white_box_b1"] = float(square_white_box)
            parts[-1] += f" at batch size 1 (white-box there {square_white_box:.1f} %)"
    failed = []
    if "transfer" in numbers:
        failed.append(numbers["transfer"] < white_box - tol)
    if "square" in numbers:
        failed.append(numbers["square"] < numbers.get("white_box_b1", white_box) - tol)
    ok = (not any(failed)) if failed else None
    return Check(name, "black-box never beats white-box", ok,
                 ", ".join(parts) + f" vs white-box {white_box:.1f} %", numbers)


def autoattack_flags(name: str, warnings: Sequence[str]) -> Check:
    """AutoAttack's own checks: pass when it raised no warning."""
    msgs = [w.split("See ")[0].strip() for w in warnings]
    return Check(name, "no AutoAttack warnings", not msgs, "; ".join(msgs) or "none", {"warnings": len(msgs)})


def from_row(d: Mapping) -> Check:
    """A :class:`Check` from its :meth:`Check.row` dict (e.g. read back from a results file)."""
    return Check(d["defence"], d["check"], d["passed"], d["detail"], dict(d.get("numbers") or {}))


# What a failed check means, in plain words (used by :func:`verdict`).
MEANING = {
    "accuracy → 0 as ε grows": "accuracy does not fall to zero at a budget where every image can be moved halfway to "
                               "grey, so the attack's gradients do not lead to the adversarial examples that must "
                               "exist there",
    "more steps and restarts never help": "more attack steps or random restarts raised robust accuracy, so the "
                                          "attack is not converging: its gradients are noisy or misleading",
    "black-box never beats white-box": "an attack that never sees the model's gradients (transfer or Square) "
                                       "beat the white-box attacks, so the model's own gradients mislead them",
    "no AutoAttack warnings": "AutoAttack's own checks raised a warning",
}


def verdict(defence: str, checks: Sequence[Check]) -> str:
    """One plain-language sentence (or a few) on the checks of ``defence``: which failed and what that means."""
    mine = [c for c in checks if c.defence == defence]
    if not mine:
        return f"{defence}: not audited."
    failed = [c for c in mine if c.passed is False]
    run = [c for c in mine if c.passed is not None]
    if not failed:
        return (f"{defence} passes all {len(run)} checks: this evaluation shows none of the usual signs of gradient "
                "masking (which rules out these failure modes, it does not prove robustness).")
    why = "; ".join(f"{MEANING.get(c.check, c.check)} ({c.detail})" for c in failed)
    return (f"{defence} FAILS {len(failed)} of {len(run)} checks: {why}. Its white-box robust accuracy may "
            "overstate its robustness and should not be read as a robustness claim without an adaptive attack.")


def verdicts(checks: Sequence[Check]) -> pd.DataFrame:
    """One row per defence: number of checks run and failed, the failed checks, and the :func:`verdict`."""
    rows = []
    for d in dict.fromkeys(c.defence for c in checks):
        mine = [c for c in checks if c.defence == d]
        failed = [c.check for c in mine if c.passed is False]
        rows.append({"defence": d, "checks run": sum(c.passed is not None for c in mine), "failed": len(failed),
                     "failed checks": ", ".join(failed), "verdict": verdict(d, checks)})
    return pd.DataFrame(rows).set_index("defence")


def table(checks: Sequence[Check]) -> pd.DataFrame:
    """Pass/fail table: one row per defence, one column per check (with the numbers in a detail table)."""
    df = pd.DataFrame([c.row() for c in checks])
    return df.pivot(index="defence", columns="check", values="result")


def details(checks: Sequence[Check]) -> pd.DataFrame:
    return pd.DataFrame([c.row() for c in checks])[["defence", "check", "result", "detail"]]
