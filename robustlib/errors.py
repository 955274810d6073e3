"""Errors raised by robustlib.

Every error names what was wrong and what would have been valid, so a user can fix the call without reading the
source. All of them derive from :class:`RobustlibError`; each also derives from the closest built-in exception so
that ``except ValueError`` and friends keep working.
"""
from __future__ import annotations

import difflib
from typing import Iterable


class RobustlibError(Exception):
    """Base class of every error robustlib raises on purpose."""


class UnknownNameError(RobustlibError, ValueError):
    """A dataset, model, method, attack, profile or schedule name that robustlib does not know."""

    def __init__(self, kind: str, name: object, valid: Iterable[str]):
        valid = sorted(valid)
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}.{hint} Valid {kind} names: {', '.join(valid)}.")
        self.kind, self.name, self.valid = kind, name, valid


class DatasetNotFoundError(RobustlibError, FileNotFoundError):
    """A dataset is missing from every place robustlib looked."""


class CorruptFileError(RobustlibError, OSError):
    """A data shard or checkpoint exists but cannot be read or has the wrong contents."""


class NotEnoughDataError(RobustlibError, ValueError):
    """More images were requested than the dataset holds."""


class ConfigError(RobustlibError, ValueError):
    """A configuration value is out of range or inconsistent with another one."""


class NonFiniteLossError(RobustlibError, FloatingPointError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class CheckpointMismatchError(RobustlibError, ValueError):
    """A checkpoint directory holds a run with a different configuration."""
