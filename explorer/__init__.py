"""Latent space explorer: load autoencoder checkpoints, map their latent space, decode anywhere.

Which modules may import torch. Importing torch costs a fresh process about 2.5 s, and the first map
is drawn from a shipped bundle that needs no model, so the page a person opens first must not wait
for it. Modules are heavy or light:

- Heavy: the modules that are about a network's layers import torch at the top, freely: ``models/``,
  ``importers/``, ``train``, ``maps/ops.py`` (decode, interpolate, sample), ``maps/mosaic.py`` and
  ``quality/features.py`` (an SAE's dictionary).
- Light: everything else, ``app.py`` included. A light module imports neither torch, scikit-learn,
  umap-learn, numba nor a heavy module at module level. Light modules that run a model now and then
  (``maps/encode.py``, ``quality/metrics.py``, ``quality/compression.py``, ``checkpoint``) import
  torch inside the functions that run it, so their types and cached results are read without it.
  Opening the app and drawing the first map imports no torch, and ``python -m explorer --help``
  neither.

A light module that needs heavy code imports it inside the one function that needs it; imports
inside functions are for that alone. tests/unit/test_imports.py checks the rule.
"""

from explorer.errors import CheckpointError, ConfigError, DatasetError, ExplorerError

__all__ = ["CheckpointError", "ConfigError", "DatasetError", "ExplorerError"]
