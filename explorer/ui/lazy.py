"""A module imported on its first use, for the views: torch takes seconds to import, and the first map must not
wait for it (every module that computes with a model imports torch)."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name``; the first attribute read imports it (then Python's own cache answers)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)
