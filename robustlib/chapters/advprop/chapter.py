"""The AdvProp chapter's claims: the paper's statements about clean accuracy (the auxiliary BN against Vanilla and
against one shared BN), the motivation (one shared BN lowers clean accuracy), what the paper does *not* claim
(robustness: the deployed clean-BN network against PGD-AT) and the ImageNet-C analogue (common corruptions), each a
test on the CIFAR-10 analogue's rows of one width (:mod:`robustlib.claims`).

A row of ``cifar10_w<width>`` is a mean over seeds; it carries the per-image flags of its first seed's run (seed 0 by
default, ``flags_seed``), so each claim is a **paired** difference over the same test images between the two rows'
seed-0 models, with its 95 % interval and verdict; beside it, the mean ± sd over seeds of the per-seed difference
(same seed = same initial weights and batch order). Every claim is checked at the smallest and at the largest width
of the run (``@small`` / ``@large`` in a claim's rows).
"""
from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import pandas as pd

from ...claims import Claim, table as claims_table
from ...report import Report
from ...stats import mean_sd

TABLE = re.compile(r"^cifar10_w(\d+)$")
WHERE = {"large": "larger width", "small": "smaller width"}

_IMAGENET = ("ImageNet top-1, EfficientNet B0–B7: +0.2 to +0.7 (B7 84.5 → 85.2); ResNet-50 76.2 → 77.0 (Fast "
             "AdvProp, third-party)")


def _claims(where: str) -> list[Claim]:
    w = f" ({WHERE[where]})"
    a, v, m, p = (f"{row}@{where}" for row in ("AdvProp", "Vanilla", "Mixed (shared BN)", "PGD-AT"))
    return [
        Claim(f"aux_vs_vanilla_{where}", "AdvProp (auxiliary BN) improves clean accuracy over Vanilla" + w,
              "greater", "clean", a, v, paper=_IMAGENET,
              source="abstract; tensorflow/tpu release table b8df9aa (advprop.md §5.1); Fast AdvProp (§5.4)"),
        Claim(f"aux_vs_mixed_{where}", "…and over Mixed, the same adversarial images through one shared BN" + w,
              "greater", "clean", a, m,
              paper="no number in the verified sources ('the key is a separate auxiliary BN'); third-party "
                    "Sandwich BN, CIFAR-10 ResNet-18 at ε = 8/255: 94.47 % vs 84.84 %",
              source="abstract; seed review (disentangled learning); advprop.md §2, §7"),
        Claim(f"mixed_below_vanilla_{where}", "One shared BN (Mixed) lowers clean accuracy below Vanilla" + w,
              "less", "clean", m, v,
              paper="'generally yields lower performance than the vanilla training setting on clean images' (no "
                    "number)", source="seed review, restating the paper's motivation; advprop.md §2"),
        Claim(f"less_robust_than_at_{where}", "AdvProp's deployed clean-BN network is less robust than PGD-AT under "
              "PGD at ε = 8/255 (the paper claims no robustness)" + w, "less", "pgd20", a, p,
              paper="no robustness claim: adversarial examples as training data for clean accuracy; the auxiliary "
                    "BNs are dropped at test time", source="abstract; advprop.md summary and §2 (test time)"),
        Claim(f"corruptions_{where}", "AdvProp improves accuracy under common corruptions over Vanilla (the "
              "ImageNet-C analogue; one corrupted copy per test image)" + w, "greater", "corruption_rotated", a, v,
              paper="EfficientNet-B7: ImageNet-C mCE −6.5 (abstract)", source="abstract; advprop.md §5.3"),
    ]


# The claims at the larger width first, then at the smaller.
CLAIMS = _claims("large") + _claims("small")


def _widths(rows: Sequence[Mapping]) -> dict[str, int]:
    ws = sorted({int(m.group(1)) for r in rows if (m := TABLE.match(r.get("table", "")))})
    return {"large": ws[-1], "small": ws[0]} if ws else {}


def claims_rows(rep: Report) -> dict[str, dict]:
    """The rows the claims name, ``"<method>@large"`` / ``"<method>@small"`` → that method's row of
    ``cifar10_w<largest | smallest width>``."""
    rows = [r for r in rep.rows if TABLE.match(r.get("table", ""))]
    widths = _widths(rows)
    by = {(r["table"], r["method"]): r for r in rows}
    return {f"{r['method']}@{where}": r for where, w in widths.items() for (t, _), r in by.items()
            if t == f"cifar10_w{w}"}


def _seed_difference(ra: Mapping | None, rb: Mapping | None, metric: str) -> str:
    """'mean ± sd (k seeds)' of the per-seed difference a − b over the seeds both rows have."""
    if not ra or not rb:
        return ""
    va, vb = ((r.get("per_seed") or {}).get(metric) or {} for r in (ra, rb))
    d = [va[s] - vb[s] for s in sorted(set(va) & set(vb)) if va[s] is not None and vb[s] is not None]
    if not d:
        return ""
    m, sd, n = mean_sd(d)
    return f"{m:+.2f} ± {sd:.2f} ({n} seeds)" if n > 1 else f"{m:+.2f} (1 seed)"


def claims(rep: Report) -> pd.DataFrame:
    """CLAIMS checked on the ``cifar10_w<width>`` rows of ``rep`` (gathered from the part notebooks, or rebuilt by
    :func:`robustlib.chapters.advprop.add_rows`): the paired test on the rows' first-seed per-image flags, and the
    seed mean ± sd of the same difference beside it. A claim whose rows (or flags) are missing says "not measured"."""
    by = claims_rows(rep)
    widths = _widths(list(by.values()))

    def flags(row: str, metric: str):
        s = ((by.get(row) or {}).get("flags") or {}).get(metric)
        return None if s is None else [ch == "1" for ch in s]

    out = claims_table(CLAIMS, flags)
    where = [c.a.split("@", 1)[1] for c in CLAIMS]
    out.insert(0, "width", [widths.get(w) for w in where])
    out.insert(4, "seeds: a − b", [_seed_difference(by.get(c.a), by.get(c.b), c.metric) for c in CLAIMS])
    seed = [(by.get(c.a) or {}).get("flags_seed") for c in CLAIMS]
    out.insert(5, "paired on", ["" if s is None or n is None or (isinstance(n, float) and math.isnan(n)) else
                                f"seed {s}, {int(n)} images" for s, n in zip(seed, out["n"])])
    return out


__all__ = ["CLAIMS", "claims", "claims_rows"]
