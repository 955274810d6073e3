"""What a chapter notebook records: result rows, paper-vs-ours tables, figures, and the closing run summary.

A notebook makes one :class:`Report` right after its configuration, adds a row per method with :meth:`Report.add_row`,
saves each figure it shows with :meth:`Report.savefig` (PNG and SVG), writes ``<OUT_DIR>/<paper>.json`` with
:meth:`Report.write` (validated against :mod:`robustlib.results`), and ends with :meth:`Report.summary`, which prints
profile, hardware, package versions, seed and wall time.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pandas as pd

from . import reported, results
from .errors import ConfigError
from .stats import accuracy_ci
from .utils import atomic_write_text, git_info, hardware_info, hardware_label, package_versions, resolve_device


@dataclass
class Report:
    paper: str
    profile: str
    out_dir: str | Path
    dataset: str
    n_eval: int
    seed: int = 0
    device: str = "auto"
    part: str | None = None              # a part notebook of a paper writes <paper>__<part>.json
    rows: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.paper not in results.PAPERS:
            raise ConfigError(f"unknown paper key {self.paper!r}; valid: {', '.join(results.PAPERS)}")
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._t0 = time.time()
        self.figures: list[Path] = []

    # ------------------------------------------------------------------------------------------------- rows

    def add_row(self, table: str, method: str, metrics: Mapping[str, float | None], *,
                paper: Mapping[str, float | None] | None = None, reported_table: str | None = None,
                cost_passes: float | None = None, train_s: float | None = None, epochs: int | None = None,
                note: str = "", n: int | None = None, percent: Sequence[str] | None = None,
                ci: Mapping[str, Sequence[float]] | None = None, flags: Mapping[str, Sequence[bool]] | None = None,
                **extra) -> dict:
        """Add (or replace) the row ``(table, method)``.

        ``paper`` gives the paper's numbers; by default they are looked up in :mod:`robustlib.reported` under
        ``(self.paper, reported_table or table, method)`` for the metrics measured here. ``n`` (default ``n_eval``)
        is the number of images behind the accuracies. Metrics named in ``percent`` (default: all) are proportions in
        percent and get a 95 % Wilson interval; ``ci`` supplies intervals for other metrics (e.g. a bootstrap
        interval of a mean distance).
        ``flags`` keeps the per-image correct flags of accuracies (as '0'/'1' strings), so that claims can
        compare two rows on the same images with a paired interval (:mod:`robustlib.claims`).
        """
        metrics = {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
                   for k, v in metrics.items()}
        if paper is None:
            paper = self._reported(reported_table or table, method, metrics)
        paper = {k: paper.get(k) for k in metrics}
        n = self.n_eval if n is None else n
        pct = set(metrics) if percent is None else set(percent)
        intervals = {k: list(accuracy_ci(v, n)) for k, v in metrics.items() if v is not None and n and k in pct}
        intervals.update({k: [float(a), float(b)] for k, (a, b) in (ci or {}).items() if metrics.get(k) is not None})
        row = {"table": table, "method": method, "metrics": metrics, "paper": paper, "ci": intervals, "n": n,
               "cost_passes": None if cost_passes is None else float(cost_passes),
               "train_s": None if train_s is None else float(train_s),
               "epochs": None if epochs is None else int(epochs), "note": note, **extra}
        if flags:
            row["flags"] = {k: "".join("1" if bool(v) else "0" for v in f) for k, f in flags.items()}
        self.rows = [r for r in self.rows if (r["table"], r["method"]) != (table, method)] + [row]
        return row

    def _reported(self, table: str, method: str, metrics) -> dict:
        try:
            return reported.lookup(self.paper, table, method)
        except Exception:
            return {}

    def add_missing(self, table: str, methods: Iterable[str], note: str, metrics: Sequence[str] = ()) -> None:
        """Keep rows the paper has but this run did not measure, each with a note saying why."""
        for m in methods:
            if not any((r["table"], r["method"]) == (table, m) for r in self.rows):
                paper = self._reported(table, m, metrics)
                self.rows.append({"table": table, "method": m, "metrics": {k: None for k in metrics},
                                  "paper": {k: paper.get(k) for k in metrics}, "ci": {}, "n": self.n_eval,
                                  "cost_passes": None, "train_s": None, "epochs": None, "note": note})

    def frame(self, table: str | None = None) -> pd.DataFrame:
        rows = [r for r in self.rows if table is None or r["table"] == table]
        return pd.DataFrame(rows)

    def compare(self, table: str, metrics: Sequence[str] | None = None) -> pd.DataFrame:
        """The paper-vs-ours table: per method and metric, ours, the paper's number, the difference and its 95 %
        interval."""
        return compare_table([r for r in self.rows if r["table"] == table], metrics)

    def runs(self, table: str) -> pd.DataFrame:
        """Cost, training time, epochs and notes of a table's rows."""
        return runs_table([r for r in self.rows if r["table"] == table])

    # ---------------------------------------------------------------------------------------------- figures

    def savefig(self, fig, name: str) -> None:
        """Save ``fig`` as ``<OUT_DIR>/figures/<paper>/<name>.{png,svg}`` (the notebook shows it as usual)."""
        folder = self.out_dir / "figures" / self.name
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for ext in ("png", "svg"):
            p = folder / f"{name}.{ext}"
            fig.savefig(p, dpi=150 if ext == "png" else None, bbox_inches="tight")
            paths.append(p)
        self.figures.extend(paths)

    # ----------------------------------------------------------------------------------------------- output

    @property
    def wall_s(self) -> float:
        return time.time() - self._t0

    def document(self) -> dict:
        dev = resolve_device(self.device)
        return {"paper": self.paper, "profile": self.profile, "dataset": self.dataset, "n_eval": int(self.n_eval),
                "seed": self.seed, "hardware": hardware_info(dev), "versions": package_versions(),
                "git": git_info(Path(__file__).parent), "wall_s": round(self.wall_s, 2), "rows": self.rows,
                "figures": [str(p.relative_to(self.out_dir)) for p in self.figures],
                **({"part": self.part} if self.part else {}), **self.extra}

    @property
    def name(self) -> str:
        return f"{self.paper}__{self.part}" if self.part else self.paper

    @property
    def path(self) -> Path:
        return self.out_dir / f"{self.name}.json"

    def write(self) -> Path:
        """Validate and write ``<OUT_DIR>/<paper>.json`` (``<paper>__<part>.json`` for a part); returns its path."""
        doc = results.validate(self.document())
        path = self.path
        atomic_write_text(results.dumps(doc), path)
        return path

    def summary(self) -> str:
        """Profile, hardware, versions, seed and wall time, printed as the notebook's last output."""
        d = self.document()
        v = d["versions"]
        lines = [f"profile      {self.profile}",
                 f"hardware     {hardware_label(d['hardware'])}",
                 f"versions     python {v['python']}, torch {v['torch']}, torchvision {v['torchvision']}, "
                 f"robustlib {v['robustlib']}, pyautoattack {v['pyautoattack']}",
                 f"git          {d['git'].get('commit') or 'unknown'}{' (modified)' if d['git'].get('dirty') else ''}",
                 f"seed         {self.seed}",
                 f"wall time    {self.wall_s:.1f} s",
                 f"results      {self.path}"]
        text = "\n".join(lines)
        print(text)
        return text


def compare_table(rows: Sequence[dict], metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Ours vs paper, one line per (method, metric): ``ours``, ``paper``, ``diff`` (ours − paper) and the 95 %
    interval of the difference (our interval — Wilson for accuracies — shifted by the paper's constant)."""
    if metrics is None:
        metrics = []
        for r in rows:
            metrics += [m for m in r["metrics"] if m not in metrics]
    out = []
    for r in rows:
        intervals = r.get("ci") or {}
        for m in metrics:
            if m not in r["metrics"]:
                continue
            ours = r["metrics"].get(m)
            ref = (r.get("paper") or {}).get(m)
            rec = {"method": r["method"], "metric": m, "ours": ours, "paper": ref, "diff": None, "diff 95% CI": ""}
            if ours is not None and m in intervals:
                lo, hi = intervals[m]
                rec["ours 95% CI"] = f"[{_g(lo)}, {_g(hi)}]"
                if ref is not None:
                    rec["diff"] = ours - ref
                    rec["diff 95% CI"] = f"[{_g(lo - ref, True)}, {_g(hi - ref, True)}]"
            else:
                rec["ours 95% CI"] = ""
                if ours is not None and ref is not None:
                    rec["diff"] = ours - ref
            out.append(rec)
    cols = ["method", "metric", "ours", "ours 95% CI", "paper", "diff", "diff 95% CI"]
    return pd.DataFrame(out, columns=cols).set_index(["method", "metric"])


def _g(v: float, sign: bool = False) -> str:
    """1 decimal for percent-scale numbers, 3 significant digits for small ones (distances)."""
    fmt = ("+" if sign else "") + (".1f" if abs(v) >= 1 or v == 0 else ".3g")
    return format(v, fmt)


def runs_table(rows: Sequence[dict]) -> pd.DataFrame:
    """Per method: measured cost (N per sample), training time, epochs and the note."""
    return pd.DataFrame([{"method": r["method"], "cost (N/sample)": r.get("cost_passes"),
                          "train time (s)": r.get("train_s"), "epochs": r.get("epochs"), "note": r.get("note", "")}
                         for r in rows]).set_index("method")


def _fmt(v, d):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def format_compare(df: pd.DataFrame, digits: int = 2):
    """A pandas Styler for :func:`compare_table` / :func:`runs_table` output: fixed decimals, blanks for missing."""
    fmt = {c: (lambda v, d=digits: _fmt(v, d)) for c in df.columns
           if c in ("ours", "paper", "diff", "cost (N/sample)", "train time (s)")}
    fmt.update({c: (lambda v: _fmt(v, 0)) for c in df.columns if c == "epochs"})
    return df.style.format(fmt, na_rep="")
