"""Model zoo. Importing this package registers every kind with explorer.registry."""

from explorer.models import ae, dae, sae, vae  # noqa: F401
from explorer.models.base import Autoencoder, ModelConfig

__all__ = ["Autoencoder", "ModelConfig"]
