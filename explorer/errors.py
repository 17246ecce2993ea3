"""Errors a user can cause. Each carries a message a person can act on."""


class ExplorerError(Exception):
    """Base of every error the explorer reports to a user instead of crashing."""


class ConfigError(ExplorerError):
    """A model configuration is invalid (unknown kind, bad size, unknown option)."""


class CheckpointError(ExplorerError):
    """A checkpoint file cannot be read, is malformed, or does not match its model."""


class DatasetError(ExplorerError):
    """A dataset cannot be found, read, or does not fit the model."""


class MetricsError(ExplorerError):
    """Quality metrics cannot be computed from what was given (too few images, no labels, bad options)."""
