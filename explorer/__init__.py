"""Latent space explorer: load autoencoder checkpoints, map their latent space, decode anywhere.

Which modules may import torch. Importing torch costs a fresh process about 2.5 s, and the first map
is drawn from a shipped bundle that needs no model, so the page a person opens first must not wait
for it. Modules are light or heavy:

- Light: never import torch or a heavy module at module level. This package's ``__init__``,
  ``errors``, ``settings``, ``registry``, ``store``, ``runtime``, ``kept``, ``devserver``,
  ``__main__``, ``data/``, ``maps/`` (all but ``maps/encode.py`` and ``maps/ops.py``), ``figures/``,
  ``cli/``, ``ui/`` and ``app.py``. Opening the app and drawing the first map from a cached bundle
  imports no torch, and ``python -m explorer --help`` neither.
- Heavy: import torch at the top, freely. ``models/``, ``checkpoint``, ``train``, ``importers/``,
  ``quality/``, ``maps/encode.py``, ``maps/ops.py`` and ``untrusted/child*.py``.

A light module that needs heavy code imports it inside the one function that needs it; imports
inside functions are for that alone. tests/unit/test_imports.py checks the rule.
"""

from explorer.errors import CheckpointError, ConfigError, DatasetError, ExplorerError

__all__ = ["CheckpointError", "ConfigError", "DatasetError", "ExplorerError"]
