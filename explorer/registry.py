"""The one list of model kinds. The CLI, the app and the tests all read it.

Each model file registers its class once with ``@register``; nothing else keeps
a list of kinds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from explorer.errors import ConfigError

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder, ModelConfig

_KINDS: dict[str, type[Autoencoder]] = {}


def register(cls: type[Autoencoder]) -> type[Autoencoder]:
    """Class decorator: add a model class under its ``kind``; a second use of a name raises."""
    kind = cls.kind
    if not kind:
        raise ConfigError(f"{cls.__name__} has no kind")
    if kind in _KINDS:
        raise ConfigError(f"model kind {kind!r} is registered twice ({_KINDS[kind].__name__}, {cls.__name__})")
    if cls.config_class.kind != kind:
        raise ConfigError(f"{cls.__name__}.config_class has kind {cls.config_class.kind!r}, expected {kind!r}")
    _KINDS[kind] = cls
    return cls


def _ensure_loaded() -> None:
    import explorer.models  # noqa: F401  (importing registers every kind)


def kinds() -> list[str]:
    """Names of every registered kind, sorted."""
    _ensure_loaded()
    return sorted(_KINDS)


def model_class(kind: str) -> type[Autoencoder]:
    _ensure_loaded()
    try:
        return _KINDS[kind]
    except KeyError:
        raise ConfigError(f"unknown model kind {kind!r}; known kinds: {', '.join(sorted(_KINDS))}") from None


def config_class(kind: str) -> type[ModelConfig]:
    return model_class(kind).config_class


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a config from its ``to_dict()`` form; the dict names its own kind."""
    if not isinstance(data, dict) or "kind" not in data:
        raise ConfigError("model config must be a JSON object with a 'kind' key")
    return config_class(str(data["kind"])).from_dict(data)


def build(config: ModelConfig) -> Autoencoder:
    """A fresh model for ``config``."""
    return model_class(config.kind)(config)
