"""Latent space explorer: load autoencoder checkpoints, map their latent space, decode anywhere."""

from explorer.errors import CheckpointError, ConfigError, DatasetError, ExplorerError

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DatasetError",
    "ExplorerError",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
]


def __getattr__(name: str):
    # torch is imported only when a checkpoint function is first used, so light commands stay light.
    if name in ("load_checkpoint", "save_checkpoint", "read_metadata"):
        from explorer import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'explorer' has no attribute {name!r}")
