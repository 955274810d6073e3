"""The model registry (``MODELS.names()``); model modules register their constructors here."""
from __future__ import annotations

from ..registry import Registry

MODELS: Registry = Registry("model")


def register_model(name: str):
    """Decorator: register a model constructor under ``name``."""
    return MODELS.register(name)
