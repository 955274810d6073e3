"""The gradreg chapter's claims: Finlay & Oberman's headline statements (the poster's CIFAR-10 ℓ∞ table, the cost in
passes, the lower bounds of the bound figure) as tests on the rows of the report, each with a verdict in plain words.

Comparisons of two rows are paired over the same test images (:mod:`robustlib.claims`) on the rows' per-image flags
(:func:`.tables.linf_flags`: ``clean``, ``rob_2``, ``rob_8`` — correct, and not broken within 2/255 or 8/255, so the
accuracies are 100 − the table's error rates); the cost claim compares measured passes per sample. The bound claims
have a shape :mod:`robustlib.claims` lacks — "on *every* image the bound does not exceed the attack's distance" —
and are checked here (:func:`check_bound`) and appended to the same table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import pandas as pd

from ...claims import CONTRADICTED, MISSING, SUPPORTED, Claim, flags_from_rows, table as claims_table
from ...report import Report
from ...stats import wilson_interval

LINF, L2 = "cifar10_linf", "cifar10_l2"
FD, AT, UND = "squared l1 lambda=1", "7-step AT", "Undefended"

# The poster's CIFAR-10 ℓ∞ table (robust accuracy = 100 − error): undefended 29.18 % at 2/255, 7-step AT 77.14 %,
# squared ℓ1 λ = 0.1 75.08 %, λ = 1 81.53 %; at 8/255 AT 53.98 %, λ = 1 41.31 %; clean AT 83.67 %, λ = 1 90.98 %.
CLAIMS = [
    Claim("fd_cost", "The FD penalty costs about 5N per sample, against 16N for 7-step AT (measured passes, at most "
          "5/16)", "cost_ratio_at_most", "passes", FD, AT, value=5 / 16 + 1e-6,
          paper="5N vs 16N per sample (2 forwards + ≈ 3 backwards vs 8 + 8); 5.15 h vs 12.10 h on a GTX 1080 Ti",
          source="finlay_oberman.md §2 (cost); poster table and journal Table 1 (hours)"),
    Claim("fd_near_at", "…and buys robustness close to 7-step AT's at 2/255: squared ℓ1 (λ = 1) is at most 5 points "
          "less robust than 7-step AT", "greater", "rob_2", FD, AT, margin=-5.0,
          paper="error at 2/255: 18.47 % vs 22.86 % (the FD model 4.4 points *more* robust)",
          source="poster table 'Adversarial robustness statistics, ℓ∞' (CIFAR-10)"),
    Claim("fd_beats_undefended", "Squared ℓ1 (λ = 1) is more robust than the undefended network at 2/255", "greater",
          "rob_2", FD, UND, paper="error at 2/255: 18.47 % vs 70.82 %", source="poster table (CIFAR-10)"),
    Claim("small_lambda_beats_undefended", "…and so is squared ℓ1 with λ = 0.1", "greater", "rob_2",
          "squared l1 lambda=0.1", UND, paper="error at 2/255: 24.92 % vs 70.82 %", source="poster table (CIFAR-10)"),
    Claim("at_best_at_8", "7-step AT stays the most robust at 8/255: more robust than squared ℓ1 (λ = 1)", "greater",
          "rob_8", AT, FD, paper="error at 8/255: 46.02 % vs 58.69 %", source="poster table (CIFAR-10)"),
    Claim("fd_cleaner_than_at", "Squared ℓ1 (λ = 1) keeps a higher clean accuracy than 7-step AT", "greater", "clean",
          FD, AT, paper="clean error: 9.02 % vs 16.33 %", source="poster table (CIFAR-10)"),
]

# the bound figure's models (smooth ReLU, so that the C-bound exists): undefended and defended (squared ℓ2, λ = 0.1)
BOUND_ROWS = ("Undefended (smooth)", "squared l2 lambda=0.1 (smooth)")


@dataclass(frozen=True)
class BoundClaim:
    """"On every image of ``rows`` the flag ``metric`` holds" (a bound ≤ the best attack's ℓ2 distance).

    It is a count over the images measured, not an estimate of a rate: *supported* when every image holds,
    *contradicted* as soon as one does not (the paper's own statement is "for all attacked images"), *not measured*
    when a row or its flag is missing. The 95 % Wilson interval of the rate is shown for reference.
    """

    key: str
    statement: str
    metric: str
    rows: tuple[str, ...]
    paper: str = ""
    source: str = ""

    @property
    def test(self) -> str:
        return f"{self.metric}: on every image of {', '.join(self.rows)} (k = n)"


BOUND_CLAIMS = [
    BoundClaim("lbound_below", "The L-bound lies below the attacks' ℓ2 distance on every image", "lbound_ok",
               BOUND_ROWS, paper="CIFAR-10: the bounds held for all attacked images (ImageNet-1k: failed for ≈ 9 %)",
               source="arXiv v1 / thesis Figs 5.4–5.5; finlay_oberman.md §3.4"),
    BoundClaim("cbound_below", "The C-bound (curvature) lies below the attacks' ℓ2 distance on every image",
               "cbound_ok", BOUND_ROWS,
               paper="CIFAR-10: the bounds held for all attacked images (ImageNet-1k: failed for ≈ 9 %)",
               source="arXiv v1 / thesis Figs 5.4–5.5; finlay_oberman.md §3.4"),
]


def check_bound(claim: BoundClaim, flags) -> dict:
    """Check a :class:`BoundClaim` with ``flags(row, metric)``: the rows' flags pooled, k of n holding."""
    got = [flags(r, claim.metric) for r in claim.rows]
    out = {"claim": claim.statement, "test": claim.test, "ours": "", "95% CI": "", "n": None, "paper": claim.paper,
           "verdict": MISSING}
    if any(g is None for g in got):
        return out
    pooled = [bool(v) for g in got for v in g]
    n, k = len(pooled), sum(pooled)
    if n == 0:
        return out
    lo, hi = wilson_interval(k, n)
    out.update(ours=f"{100.0 * k / n:.1f} % ({k}/{n})", n=n, verdict=SUPPORTED if k == n else CONTRADICTED,
               **{"95% CI": f"[{lo:.1f}, {hi:.1f}]"})
    return out


def claims(rep: Report) -> pd.DataFrame:
    """CLAIMS checked on the ℓ∞ table's rows of ``rep`` (per-image flags, measured passes), then BOUND_CLAIMS on the
    ℓ2 table's rows of the bound figure; a claim whose rows did not run says "not measured"."""
    linf = [r for r in rep.rows if r.get("table") == LINF]
    cost = {r["method"]: r.get("cost_passes") for r in linf}.get
    df = claims_table(CLAIMS, flags_from_rows(linf, LINF), cost)
    flags = flags_from_rows([r for r in rep.rows if r.get("table") == L2], L2)
    extra = pd.DataFrame([check_bound(c, flags) for c in BOUND_CLAIMS]).set_index("claim")
    return pd.concat([df, extra[df.columns]])


def verdicts(table: pd.DataFrame) -> Mapping[str, str]:
    """{claim key: verdict} of a :func:`claims` table."""
    keys: Sequence = [c.key for c in CLAIMS] + [c.key for c in BOUND_CLAIMS]
    return dict(zip(keys, table["verdict"]))


__all__ = ["BOUND_CLAIMS", "BOUND_ROWS", "CLAIMS", "BoundClaim", "check_bound", "claims", "verdicts"]
