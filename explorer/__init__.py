"""Latent space explorer: load autoencoder checkpoints, map their latent space, decode anywhere."""

from explorer.errors import CheckpointError, ConfigError, DatasetError, ExplorerError

__all__ = ["CheckpointError", "ConfigError", "DatasetError", "ExplorerError"]
