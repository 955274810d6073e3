"""The ABNN chapter's claims: the slides' statements (Table 1, the cost formula, the UCF-101 ROA table as a CIFAR-10
analogue) and the audit's question — is ABNN robust *without* adversarial training? — as tests on the Table 1 rows of
the report, each with a paired interval over the same test images (:mod:`robustlib.claims`), and the sentence the
chapter concludes with, decided by those verdicts and the gradient-masking checks.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from ...claims import MISSING, SUPPORTED, Claim, flags_from_rows, table as claims_table
from ...evaluation import B1
from ...report import Report

TABLE = "cifar10"

# Metrics are the evaluation's flag columns: "pgd" the headline PGD-t_max, "pgd_b" the audit's middle PGD (PGD-20
# outside smoke), "worst" the per-image worst case over every ℓ∞ attack, "<key>@b1" the same adversarial images
# classified one at a time (a batch-independent model's own column stands in for it), "aa" AutoAttack. A row written
# "ABNN@transfer" is ABNN's "transfer" column (two columns of one row compared on the same images).
CLAIMS = [
    Claim("clean_vs_at", "ABNN keeps a higher clean accuracy than PGD-AT", "greater", "clean", "ABNN", "PGD-AT",
          paper="87.5 % vs 83.3 %", source="slides Table 1; abstract ('higher clean accuracy than AT')"),
    Claim("clean_near_standard", "ABNN's clean accuracy stays within 6 points of the undefended network's", "within",
          "clean", "ABNN", "No Defense", margin=6.0, paper="87.5 % vs 93.4 % (−5.9)", source="slides Table 1"),
    Claim("robust_pgd", "ABNN is robust without adversarial training: more robust than No Defense under PGD",
          "greater", "pgd", "ABNN", "No Defense", paper="31.5 % vs 0.0 %", source="slides Table 1; abstract"),
    Claim("robust_pgd_b1", "…also when each PGD image is classified alone (batch size 1)", "greater", "pgd" + B1,
          "ABNN", "No Defense", paper="the slides do not state the evaluation batch",
          source="abnn.md §3 (batch-global μ/σ), §6 (evaluate at batch size 1)"),
    Claim("robust_audit", "…and under the whole audit: ABNN's worst case over every ℓ∞ attack, each image scored "
          "alone, beats No Defense's", "greater", "worst" + B1, "ABNN", "No Defense",
          paper="no audit on the slides", source="abnn.md §6 (must-have robustness sanity checks)"),
    Claim("robust_aa", "…and under AutoAttack (ABNN at batch size 1)", "greater", "aa", "ABNN", "No Defense",
          paper="not on the slides", source="abnn.md §6 (AutoAttack APGD-CE if affordable)"),
    Claim("transfer_weaker", "A PGD transferred from the undefended network is weaker on ABNN than white-box PGD",
          "greater", "transfer", "ABNN@transfer", "ABNN@pgd_b", paper="slides: the substitute makes it 'harder "
          "for adversary to transfer the attack'", source="seed slides; abnn.md §6 (transfer check)"),
    Claim("below_at", "ABNN is less robust than PGD-AT under PGD", "less", "pgd", "ABNN", "PGD-AT",
          paper="31.5 % vs 51.6 %", source="slides Table 1"),
    Claim("roa", "ABNN is more robust than No Defense under ROA (10 % patch)", "greater", "roa", "ABNN", "No Defense",
          paper="UCF-101: 24.4 % vs 7.0 % (no CIFAR-10 number)", source="slides, UCF-101 ROA table (an analogue here)"),
    Claim("cost_quarter", "ABNN trains at a quarter of PGD-AT's cost per epoch (measured passes, 3N vs 12N)",
          "cost_ratio_at_most", "passes", "ABNN", "PGD-AT", value=0.25 + 1e-6, paper="3N vs 12N",
          source="slides Table 1 and the cost formula 2N(t_max + 1)"),
    Claim("cost_vs_standard", "…and at 1.5× an undefended network's (measured passes, 3N vs 2N)",
          "cost_ratio_at_most", "passes", "ABNN", "No Defense", value=1.5 + 1e-6, paper="3N vs 2N",
          source="slides Table 1 ('2N + N = 3N')"),
]


def row_flags(rows: Sequence[Mapping], table_name: str = TABLE):
    """``flags(row, metric)`` over report rows with per-image flags: ``row`` may be ``"<method>@<column>"`` (that
    column of that row, whatever ``metric`` says), and a ``<key>@b1`` column falls back to ``<key>`` for a row of a
    batch-independent model (classifying its images alone changes nothing)."""
    base = flags_from_rows(rows, table_name)
    by = {r["method"]: r for r in rows if r.get("table") == table_name}

    def get(row: str, metric: str):
        if row not in by and "@" in row:
            row, metric = row.split("@", 1)
        got = base(row, metric)
        r = by.get(row)
        if got is None and metric.endswith(B1) and r is not None and not r.get("batch_dependent"):
            got = base(row, metric[:-len(B1)])
        return got
    return get


def claims(rep: Report, table_name: str = TABLE) -> pd.DataFrame:
    """CLAIMS checked on the Table 1 rows of ``rep`` (their per-image flags and measured passes per sample per
    epoch); a claim whose rows did not run, or whose column this profile does not measure, says "not measured"."""
    rows = [r for r in rep.rows if r.get("table") == table_name]
    cost = {r["method"]: r.get("cost_passes") for r in rows}.get
    return claims_table(CLAIMS, row_flags(rows), cost)


def _verdict(table: pd.DataFrame, key: str) -> str:
    statement = next(c.statement for c in CLAIMS if c.key == key)
    return table.loc[statement, "verdict"] if statement in table.index else MISSING


def conclusion(table: pd.DataFrame, checks: pd.DataFrame | None = None) -> str:
    """What the chapter may say about "robust without adversarial training", from the claims' verdicts and the
    gradient-masking checks (:func:`robustlib.chapters.abnn.verdicts`)."""
    pgd, b1, audit = (_verdict(table, k) for k in ("robust_pgd", "robust_pgd_b1", "robust_audit"))
    failed = [] if checks is None else [c for c, ok in checks["passed"].items() if ok is False]
    if pgd == MISSING:
        return "Not measured: the Table 1 rows of No Defense and ABNN are missing."
    if pgd != SUPPORTED:
        return (f"ABNN is not shown to be more robust than No Defense under white-box PGD ({pgd}): in this threat "
                "model, at this scale, it is not robust without adversarial training.")
    if audit == SUPPORTED and b1 == SUPPORTED and not failed:
        return ("ABNN keeps more robust accuracy than No Defense under every attack of the audit, scored one image "
                "at a time, and every gradient-masking check passes: at this scale its robustness without "
                "adversarial training survives the audit (quote the worst case, not the headline PGD).")
    why = []
    if b1 != SUPPORTED:
        why.append(f"its PGD advantage scored at batch size 1 is {b1}")
    if audit != SUPPORTED:
        why.append(f"its advantage in the worst case over the audit's attacks is {audit}")
    if failed:
        why.append("failed checks: " + "; ".join(failed))
    return ("ABNN looks more robust than No Defense under the headline PGD, but the audit does not confirm it ("
            + ", ".join(why) + "): the chapter does not support 'robust without adversarial training'.")


__all__ = ["CLAIMS", "TABLE", "claims", "conclusion", "row_flags"]
