"""The results file every chapter writes: ``<OUT_DIR>/<paper>.json``.

Schema (documented in the book's appendix; extra keys are allowed and preserved)::

    {
      "paper": "nuat",                 # one of PAPERS
      "profile": "quick",              # smoke | quick | cpu | paper
      "dataset": "cifar10",
      "n_eval": 1000,                  # test images per evaluation
      "seed": 0,
      "hardware": {...},               # robustlib.utils.hardware_info()
      "versions": {...},               # robustlib.utils.package_versions()
      "git": {"commit": "...", "dirty": false},
      "wall_s": 512.3,                 # wall time of the whole notebook
      "part": "baselines",             # optional: a paper's part notebook (file <paper>__<part>.json)
      "rows": [
        {
          "table": "cifar10_resnet18", # which table of the chapter the row belongs to
          "method": "NuAT-WA",         # the paper's label for the row
          "metrics": {"clean": 82.1, "pgd20": 53.0},     # accuracies/errors in percent (other units stated by
                                                         # the chapter, e.g. mean_dist); null when not measured
          "paper":   {"clean": 82.21, "pgd20": 54.14},   # the paper's number for each metric, or null
          "ci":      {"clean": [81.0, 83.2]},            # optional: 95 % interval per metric
          "cost_passes": 7.0,          # measured N per training sample (null if nothing was trained)
          "train_s": 301.2,            # training wall time in seconds (null if not trained here)
          "epochs": 15,                # epochs trained (null if not trained here)
          "note": "..."                # why a row is missing or shortened ("" when complete)
        }
      ]
    }
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import ConfigError

PAPERS = ("adversarial_examples", "nuat", "abnn", "advprop", "gradreg", "comparison", "bench")
PROFILES = ("smoke", "quick", "cpu", "paper")   # the run profiles, defined once (chapters.common re-exports it)
GPU_PROFILES = ("quick", "paper")               # published over cpu results, which stay in book/results/cpu/
TOP_LEVEL = {"paper": str, "profile": str, "dataset": str, "n_eval": int, "hardware": dict, "versions": dict,
             "git": dict, "wall_s": (int, float), "rows": list}
ROW = {"table": str, "method": str, "metrics": dict, "paper": dict, "cost_passes": (int, float, type(None)),
       "train_s": (int, float, type(None)), "epochs": (int, type(None)), "note": str}


class SchemaError(ConfigError):
    """A results file does not follow the schema."""


def _number_or_null(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v))


def validate(doc: dict[str, Any]) -> dict[str, Any]:
    """Check ``doc`` against the schema; raise :class:`SchemaError` listing every problem."""
    problems = []
    if not isinstance(doc, dict):
        raise SchemaError(f"a results file must hold a JSON object, got {type(doc).__name__}")
    for key, typ in TOP_LEVEL.items():
        if key not in doc:
            problems.append(f"missing top-level key {key!r}")
        elif not isinstance(doc[key], typ) or isinstance(doc[key], bool):
            problems.append(f"{key!r} should be {_typename(typ)}, got {type(doc[key]).__name__}")
    if doc.get("paper") not in PAPERS:
        problems.append(f"paper {doc.get('paper')!r} is not one of {', '.join(PAPERS)}")
    if doc.get("profile") not in PROFILES:
        problems.append(f"profile {doc.get('profile')!r} is not one of {', '.join(PROFILES)}")
    for i, row in enumerate(doc.get("rows") or []):
        where = f"rows[{i}] ({row.get('method', '?') if isinstance(row, dict) else '?'})"
        if not isinstance(row, dict):
            problems.append(f"{where} is not an object")
            continue
        for key, typ in ROW.items():
            if key not in row:
                problems.append(f"{where}: missing key {key!r}")
            elif not isinstance(row[key], typ) or (isinstance(row[key], bool)):
                problems.append(f"{where}: {key!r} should be {_typename(typ)}, got {type(row[key]).__name__}")
        for part in ("metrics", "paper"):
            for k, v in (row.get(part) or {}).items():
                if not _number_or_null(v):
                    problems.append(f"{where}: {part}[{k!r}] should be a number or null, got {v!r}")
        extra = set(row.get("paper") or {}) - set(row.get("metrics") or {})
        if extra:
            problems.append(f"{where}: paper numbers for metrics that are not in 'metrics': {sorted(extra)}")
        if not (row.get("metrics") or {}) and row.get("cost_passes") is None and not row.get("note"):
            problems.append(f"{where}: a row without measurements needs a note saying why")
    if problems:
        raise SchemaError("results do not follow the schema:\n  " + "\n  ".join(problems))
    return doc


def _typename(t) -> str:
    if isinstance(t, tuple):
        return " or ".join("null" if x is type(None) else x.__name__ for x in t)
    return t.__name__


def load(path: str | Path) -> dict:
    """Read and validate a results file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SchemaError(f"{path} is not valid JSON: {e}") from e
    try:
        return validate(doc)
    except SchemaError as e:
        raise SchemaError(f"{path}: {e}") from None


def dumps(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=False, default=_default, allow_nan=False)


def _default(o):
    import numpy as np
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if np.isnan(o) else float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")
