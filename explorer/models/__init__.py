"""Model zoo: one file per kind, listed once below. A new kind is a new file and one line here.

The rest of the explorer asks this package, never a kind's name, what a model can do:
``kinds()``, ``title(kind)``, ``build(config)``, ``config_class(kind)``, ``config_from_dict(dict)``; and the hooks
on ``Autoencoder`` (per-image statistics, prior or not, sparse codes or not, ...).
"""

from explorer.models.ae import AE
from explorer.models.base import Autoencoder, ModelConfig
from explorer.models.dae import DAE
from explorer.models.onnx import OnnxAE
from explorer.models.sae import SAE
from explorer.models.vae import VAE
from explorer.registry import KindRegistry

KINDS = KindRegistry()
for _cls in (AE, DAE, SAE, VAE, OnnxAE):
    KINDS.register(_cls)

kinds = KINDS.kinds
trainable_kinds = KINDS.trainable_kinds
model_class = KINDS.model_class
title = KINDS.title
config_class = KINDS.config_class
config_from_dict = KINDS.config_from_dict
build = KINDS.build

__all__ = [
    "KINDS",
    "Autoencoder",
    "ModelConfig",
    "build",
    "config_class",
    "config_from_dict",
    "kinds",
    "model_class",
    "title",
    "trainable_kinds",
]
