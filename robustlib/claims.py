"""A paper's headline claims as testable statements, each checked against our runs with a verdict in plain words.

A :class:`Claim` compares one metric of two table rows measured on the same test images (``a`` beats ``b``; ``a``
matches ``b`` within a margin), or one row against a constant (``a`` falls below 10 %), or two rows' measured
training cost (``a`` costs at most a third of ``b``). :func:`check` computes the difference with a 95 % interval —
**paired** over the same images (:func:`robustlib.stats.paired_difference`), Wilson for a single row — and decides:

* **supported** — the whole interval lies on the claim's side of its boundary;
* **contradicted** — the whole interval lies on the other side;
* **not resolvable at this scale** — the interval spans the boundary (more test images or longer training would be
  needed to tell).

Cost claims compare measured passes per sample (× epochs when the claim is about whole runs); those are counts, not
samples, so they get no interval and are supported or contradicted outright.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import pandas as pd

from .errors import ConfigError
from .stats import paired_difference, wilson_interval

KINDS = ("greater", "less", "within", "below", "above", "cost_ratio_at_most")
SUPPORTED, CONTRADICTED, UNRESOLVED, MISSING = ("supported", "contradicted", "not resolvable at this scale",
                                                "not measured")


@dataclass(frozen=True)
class Claim:
    """One testable statement.

    ``kind``: ``greater`` (a − b > margin), ``less`` (a − b < −margin), ``within`` (|a − b| ≤ margin), ``below``
    (a < value), ``above`` (a > value), ``cost_ratio_at_most`` (cost(a)/cost(b) ≤ value). Metrics are accuracies in
    percent; margins and values in points (or a plain ratio for cost).
    """

    key: str
    statement: str                       # the paper's claim, in words
    kind: str
    metric: str
    a: str
    b: str | None = None
    margin: float = 0.0
    value: float | None = None
    paper: str = ""                      # the paper's own numbers behind the claim
    source: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"unknown claim kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.kind in ("greater", "less", "within", "cost_ratio_at_most") and self.b is None:
            raise ConfigError(f"claim {self.key!r} of kind {self.kind!r} compares two rows: give b")
        if self.kind in ("below", "above", "cost_ratio_at_most") and self.value is None:
            raise ConfigError(f"claim {self.key!r} of kind {self.kind!r} needs a value")


def _side(lo: float, hi: float, boundary: float, want_above: bool) -> str:
    if want_above:
        return SUPPORTED if lo > boundary else CONTRADICTED if hi < boundary else UNRESOLVED
    return SUPPORTED if hi < boundary else CONTRADICTED if lo > boundary else UNRESOLVED


def check(claim: Claim, flags: Callable[[str, str], Sequence[bool] | None],
          cost: Callable[[str], float | None] | None = None) -> dict:
    """Check ``claim``. ``flags(row, metric)`` returns the per-image correct flags of a row (None if not measured);
    ``cost(row)`` its measured training cost. Returns the claim with ours, the interval and the verdict."""
    out = {"claim": claim.statement, "kind": claim.kind, "metric": claim.metric, "a": claim.a, "b": claim.b,
           "ours": None, "ci_low": None, "ci_high": None, "verdict": MISSING, "paper": claim.paper, "n": None}
    if claim.kind == "cost_ratio_at_most":
        ca, cb = (cost(claim.a), cost(claim.b)) if cost else (None, None)
        if ca is None or cb is None or not cb:
            return out
        r = ca / cb
        out.update(ours=r, verdict=SUPPORTED if r <= claim.value else CONTRADICTED)
        return out
    fa = flags(claim.a, claim.metric)
    if fa is None:
        return out
    if claim.kind in ("below", "above"):
        n, k = len(fa), int(sum(bool(v) for v in fa))
        lo, hi = wilson_interval(k, n)
        out.update(ours=100.0 * k / n, ci_low=lo, ci_high=hi, n=n,
                   verdict=_side(lo, hi, claim.value, claim.kind == "above"))
        return out
    fb = flags(claim.b, claim.metric)
    if fb is None:
        return out
    d, lo, hi = paired_difference(fa, fb)
    out.update(ours=d, ci_low=lo, ci_high=hi, n=len(fa))
    if claim.kind == "greater":
        out["verdict"] = _side(lo, hi, claim.margin, True)
    elif claim.kind == "less":
        out["verdict"] = _side(lo, hi, -claim.margin, False)
    else:  # within: supported if the whole interval is inside ±margin, contradicted if wholly outside
        m = claim.margin
        out["verdict"] = (SUPPORTED if lo >= -m and hi <= m else CONTRADICTED if lo > m or hi < -m else UNRESOLVED)
    return out


def table(claims: Sequence[Claim], flags, cost=None) -> pd.DataFrame:
    """Every claim checked: statement, our difference (or accuracy, or cost ratio) with its 95 % interval, the
    paper's numbers and the verdict."""
    rows = []
    for c in claims:
        r = check(c, flags, cost)
        ci = "" if r["ci_low"] is None else f"[{r['ci_low']:+.1f}, {r['ci_high']:+.1f}]" if c.kind in (
            "greater", "less", "within") else f"[{r['ci_low']:.1f}, {r['ci_high']:.1f}]"
        ours = "" if r["ours"] is None else (f"{r['ours']:.2f}×" if c.kind == "cost_ratio_at_most" else
                                             f"{r['ours']:+.1f}" if c.kind in ("greater", "less", "within")
                                             else f"{r['ours']:.1f} %")
        rows.append({"claim": c.statement, "test": describe(c), "ours": ours, "95% CI": ci, "n": r["n"],
                     "paper": c.paper, "verdict": r["verdict"]})
    return pd.DataFrame(rows).set_index("claim")


def describe(c: Claim) -> str:
    """The statement as the test we run, e.g. 'aa: NuAT − FBF > 0 (paired)'."""
    if c.kind == "greater":
        return f"{c.metric}: {c.a} − {c.b} > {c.margin:g} (paired)"
    if c.kind == "less":
        return f"{c.metric}: {c.a} − {c.b} < {-c.margin + 0.0:g} (paired)"     # + 0.0: margin 0 reads "< 0", not "< -0"
    if c.kind == "within":
        return f"{c.metric}: |{c.a} − {c.b}| ≤ {c.margin:g} (paired)"
    if c.kind == "below":
        return f"{c.metric}: {c.a} < {c.value:g} %"
    if c.kind == "above":
        return f"{c.metric}: {c.a} > {c.value:g} %"
    return f"measured passes: {c.a} / {c.b} ≤ {c.value:.3g}"


def flags_from_rows(rows: Sequence[Mapping], table_name: str) -> Callable[[str, str], list[bool] | None]:
    """A ``flags`` lookup over report rows that carry per-image flags (``row["flags"][metric]`` as a '0'/'1' string,
    see :meth:`robustlib.report.Report.add_row`)."""
    by = {r["method"]: r for r in rows if r.get("table") == table_name}

    def get(row: str, metric: str):
        s = (by.get(row) or {}).get("flags", {}).get(metric)
        return None if s is None else [ch == "1" for ch in s]
    return get


__all__ = ["Claim", "check", "table", "describe", "flags_from_rows", "KINDS", "SUPPORTED", "CONTRADICTED",
           "UNRESOLVED", "MISSING"]
