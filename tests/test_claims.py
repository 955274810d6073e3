"""Claims with verdicts: the paired interval covers, is narrower than the unpaired one for correlated outcomes,
and every verdict (supported, contradicted, not resolvable) is reached when it should be — planted both ways."""
from __future__ import annotations

import random

import pytest

from robustlib import claims as cl
from robustlib.errors import ConfigError
from robustlib.report import Report
from robustlib.stats import newcombe_difference, paired_difference


def _pair(n, pa, pb, rho_share, seed):
    """Correlated per-image outcomes: a share of images decided jointly, the rest independently."""
    r = random.Random(seed)
    a, b = [], []
    for _ in range(n):
        if r.random() < rho_share:
            u = r.random()
            a.append(u < pa)
            b.append(u < pb)
        else:
            a.append(r.random() < pa)
            b.append(r.random() < pb)
    return a, b


def test_paired_interval_covers_the_true_difference_about_95_percent_of_the_time():
    # true a − b = 0.45 − 0.40 = 5 points whatever the coupling
    hits = 0
    trials = 400
    for s in range(trials):
        a, b = _pair(300, 0.45, 0.40, 0.7, s)
        _, lo, hi = paired_difference(a, b)
        hits += lo <= 5.0 <= hi
    assert 0.92 <= hits / trials <= 0.99


def test_paired_interval_is_narrower_than_the_unpaired_one_for_correlated_outcomes():
    a, b = _pair(1000, 0.45, 0.40, 0.9, 1)
    d, lo, hi = paired_difference(a, b)
    du, lou, hiu = newcombe_difference(100 * sum(a) / 1000, 1000, 100 * sum(b) / 1000, 1000)
    assert d == pytest.approx(du) and (hi - lo) < 0.6 * (hiu - lou)
    same = paired_difference(a, a)
    assert same[0] == 0 and same[1] <= 0 <= same[2] and same[2] - same[1] < 1.0
    with pytest.raises(ValueError, match="equally long"):
        paired_difference([True], [True, False])


def _lookup(data):
    return lambda row, metric: data.get((row, metric))


def test_verdicts_are_reached_both_ways_and_unresolvable_when_the_interval_spans_the_boundary():
    strong, weak = _pair(1000, 0.50, 0.35, 0.8, 2)        # a clearly beats b
    close_a, close_b = _pair(200, 0.41, 0.40, 0.5, 3)     # too close to tell on 200 images
    f = _lookup({("A", "aa"): strong, ("B", "aa"): weak, ("C", "aa"): close_a, ("D", "aa"): close_b})
    beats = cl.Claim("x", "A beats B", "greater", "aa", "A", "B")
    assert cl.check(beats, f)["verdict"] == cl.SUPPORTED
    assert cl.check(cl.Claim("y", "B beats A", "greater", "aa", "B", "A"), f)["verdict"] == cl.CONTRADICTED
    assert cl.check(cl.Claim("z", "C beats D", "greater", "aa", "C", "D"), f)["verdict"] == cl.UNRESOLVED
    assert cl.check(cl.Claim("w", "A matches B", "within", "aa", "A", "B", margin=2), f)["verdict"] == cl.CONTRADICTED
    assert cl.check(cl.Claim("v", "A matches A", "within", "aa", "A", "A", margin=2), f)["verdict"] == cl.SUPPORTED
    assert cl.check(cl.Claim("u", "B below 45", "below", "aa", "B", value=45), f)["verdict"] == cl.SUPPORTED
    assert cl.check(cl.Claim("t", "A below 45", "below", "aa", "A", value=45), f)["verdict"] == cl.CONTRADICTED
    assert cl.check(cl.Claim("s", "E beats A", "greater", "aa", "E", "A"), f)["verdict"] == cl.MISSING


def test_cost_claims_and_the_table():
    cost = {"NuAT": 7.0 * 100, "PGD-AT": 22.0 * 100}.get
    c = cl.Claim("cost", "NuAT costs about a third of PGD-AT", "cost_ratio_at_most", "cost", "NuAT", "PGD-AT",
                 value=0.4)
    assert cl.check(c, lambda r, m: None, cost)["verdict"] == cl.SUPPORTED
    tighter = cl.Claim("cost2", "NuAT costs a quarter", "cost_ratio_at_most", "cost", "NuAT", "PGD-AT", value=0.25)
    assert cl.check(tighter, lambda r, m: None, cost)["verdict"] == cl.CONTRADICTED
    df = cl.table([c, tighter], lambda r, m: None, cost)
    assert list(df["verdict"]) == [cl.SUPPORTED, cl.CONTRADICTED] and df["ours"].iloc[0] == "0.32×"
    with pytest.raises(ConfigError, match="valid: greater"):
        cl.Claim("bad", "?", "beats", "aa", "A", "B")
    with pytest.raises(ConfigError, match="give b"):
        cl.Claim("bad", "?", "greater", "aa", "A")


def test_flags_travel_in_report_rows_and_feed_the_claims(tmp_path):
    a, b = _pair(500, 0.6, 0.4, 0.8, 4)
    rep = Report("nuat", "smoke", tmp_path, "cifar10", 500)
    rep.add_row("t", "A", {"aa": 100 * sum(a) / 500}, paper={}, flags={"aa": a})
    rep.add_row("t", "B", {"aa": 100 * sum(b) / 500}, paper={}, flags={"aa": b})
    rep.write()
    f = cl.flags_from_rows(rep.rows, "t")
    assert f("A", "aa") == a and f("A", "pgd20") is None
    assert cl.check(cl.Claim("x", "A beats B", "greater", "aa", "A", "B"), f)["verdict"] == cl.SUPPORTED


def test_a_less_claim_with_no_margin_reads_less_than_zero():
    from robustlib.claims import Claim, describe
    c = Claim("x", "A is less robust than B", "less", "aa", "A", "B")
    assert describe(c) == "aa: A − B < 0 (paired)"
    assert describe(Claim("y", "A at least 2 below B", "less", "aa", "A", "B", margin=-2.0)) == "aa: A − B < 2 (paired)"
