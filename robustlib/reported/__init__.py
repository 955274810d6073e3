"""The papers' reported numbers, as data, in one place.

Each paper has one YAML file here (``<paper>.yaml``) holding its tables exactly as published, with the source of
every table. Chapters read them with :func:`table` and put them beside their own measurements; nothing else in the
project hard-codes a paper's number.

File layout::

    paper: nuat
    citation: "Sriramanan et al., Towards Efficient and Effective Adversarial Training, NeurIPS 2021"
    tables:
      <table key>:
        title: "Results on CIFAR-10 (ResNet-18)"
        source: "seed slides = README image CIFAR10/CIFAR10_results.png"
        units: "accuracy %"
        metrics: [clean, pgd20, ...]      # metric keys, as in the results schema
        rows:
          - {method: Normal, clean: 92.30, pgd20: 0.0, note: "..."}
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd
import yaml

from ..errors import UnknownNameError

HERE = Path(__file__).parent


def papers() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.yaml"))


@lru_cache(maxsize=None)
def load(paper: str) -> dict:
    path = HERE / f"{paper}.yaml"
    if not path.exists():
        raise UnknownNameError("paper with reported numbers", paper, papers())
    return yaml.safe_load(path.read_text())


def tables(paper: str) -> list[str]:
    return list(load(paper)["tables"])


def spec(paper: str, table_key: str) -> dict:
    t = load(paper)["tables"]
    if table_key not in t:
        raise UnknownNameError(f"{paper} table", table_key, t)
    return t[table_key]


def table(paper: str, table_key: str) -> pd.DataFrame:
    """A reported table as a DataFrame indexed by method (metrics as columns, plus any extra columns)."""
    s = spec(paper, table_key)
    return pd.DataFrame(s["rows"]).set_index("method")


def lookup(paper: str, table_key: str, method: str) -> dict[str, float | None]:
    """The reported metrics of one row ({metric: number or None}); unknown rows give all-None."""
    s = spec(paper, table_key)
    for row in s["rows"]:
        if row["method"] == method:
            return {m: row.get(m) for m in s["metrics"]}
    return {m: None for m in s["metrics"]}


def methods(paper: str, table_key: str) -> list[str]:
    return [r["method"] for r in spec(paper, table_key)["rows"]]
