"""One module per book chapter: its configuration per profile and the steps its notebook calls.

Notebooks stay thin (parameters → ``config`` → these functions → tables, figures, prose); anything longer than a few
lines lives here, with tests.
"""
from .common import PROFILES, RunSettings, by_profile, check_profile, settings

__all__ = ["PROFILES", "RunSettings", "by_profile", "check_profile", "settings"]
