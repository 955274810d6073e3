"""Confidence intervals for accuracies measured on a finite set of test images.

Accuracy on n images is a binomial proportion; we report the Wilson score interval (good coverage at the extremes,
where robust accuracy of an undefended model sits). A paper's number is a constant, so the interval of the
difference "ours − paper" is our interval shifted by the paper's number. Two independently measured accuracies are
compared with Newcombe's hybrid score interval; two accuracies on the *same* images with Newcombe's paired interval
(:func:`paired_difference`), which the claims of each chapter use.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

Z95 = 1.959963984540054


def wilson_interval(k: int | float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials, in percent."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (100 * max(0.0, centre - half), 100 * min(1.0, centre + half))


def accuracy_ci(acc_percent: float, n: int) -> tuple[float, float]:
    """Wilson interval (percent) for an accuracy given in percent on n images."""
    return wilson_interval(round(acc_percent * n / 100), n)


def difference_to_reference(acc_percent: float, n: int, reference: float | None) -> dict:
    """ours − reference, with the 95 % interval of our measurement carried over (the reference is a constant)."""
    if reference is None or acc_percent is None or (isinstance(acc_percent, float) and math.isnan(acc_percent)):
        return {"diff": None, "diff_lo": None, "diff_hi": None}
    lo, hi = accuracy_ci(acc_percent, n)
    return {"diff": acc_percent - reference, "diff_lo": lo - reference, "diff_hi": hi - reference}


def newcombe_difference(a_percent: float, n_a: int, b_percent: float, n_b: int,
                        z: float = Z95) -> tuple[float, float, float]:
    """Difference a − b of two independent proportions (percent) with Newcombe's hybrid score interval."""
    la, ua = (v / 100 for v in accuracy_ci(a_percent, n_a))
    lb, ub = (v / 100 for v in accuracy_ci(b_percent, n_b))
    pa, pb = a_percent / 100, b_percent / 100
    d = pa - pb
    lo = d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    hi = d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return 100 * d, 100 * lo, 100 * hi


def paired_difference(a: Sequence[bool], b: Sequence[bool], z: float = Z95) -> tuple[float, float, float]:
    """Difference of two accuracies measured on the *same* images, a − b in percent, with Newcombe's (1998, method
    10) score interval for paired proportions: the Wilson intervals of both accuracies combined with the correlation
    φ of the per-image outcomes. Two defences tested on the same 1 000 images differ far more precisely than their
    separate intervals suggest, because most images are won or lost by both."""
    a = [bool(v) for v in a]
    b = [bool(v) for v in b]
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference needs two equally long, non-empty flag lists (got {len(a)} and {len(b)})")
    n = len(a)
    both = sum(x and y for x, y in zip(a, b))
    only_a = sum(x and not y for x, y in zip(a, b))
    only_b = sum(y and not x for x, y in zip(a, b))
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    l1, u1 = (v / 100 for v in wilson_interval(both + only_a, n, z))
    l2, u2 = (v / 100 for v in wilson_interval(both + only_b, n, z))
    den = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(den) if den > 0 else 0.0
    d = p1 - p2
    lo = d - math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    hi = d + math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return 100 * d, 100 * max(lo, -1.0), 100 * min(hi, 1.0)


def mean_sd(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof = 1; 0 for a single value) and count."""
    v = [float(x) for x in values]
    if not v:
        return float("nan"), float("nan"), 0
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, sd, len(v)


# two-sided 95 % Student-t quantiles for 1–30 degrees of freedom (for mean ± t·sd/√n over seeds)
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: int) -> float:
    """The two-sided 95 % Student-t quantile for ``df`` degrees of freedom (1.96 beyond 30)."""
    return T95[df - 1] if 1 <= df <= len(T95) else 1.96
