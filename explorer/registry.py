"""The table of model kinds: name -> (model class, config class). It imports nothing from the explorer
but its errors; ``explorer.models`` fills the one instance, listing every kind once.

A model class is anything with a ``kind`` string and a ``config_class`` whose ``kind`` is the same; a ``title``
string, if it has one, is what people are shown for the kind.
"""

from __future__ import annotations

from typing import Any

from explorer.errors import ConfigError


class KindRegistry:
    def __init__(self) -> None:
        self._classes: dict[str, Any] = {}

    def register(self, cls: Any) -> Any:
        """Add a model class under its ``kind``; a second class with the same name raises."""
        kind = getattr(cls, "kind", "")
        if not kind:
            raise ConfigError(f"{cls.__name__} has no kind")
        if kind in self._classes:
            raise ConfigError(
                f"model kind {kind!r} is registered twice ({self._classes[kind].__name__}, {cls.__name__})"
            )
        if cls.config_class.kind != kind:
            raise ConfigError(f"{cls.__name__}.config_class has kind {cls.config_class.kind!r}, expected {kind!r}")
        self._classes[kind] = cls
        return cls

    def unregister(self, kind: str) -> None:
        """Take a kind out of the table (a kind registered for a while, as a test does); unknown kinds raise."""
        self.model_class(kind)
        del self._classes[kind]

    def kinds(self) -> list[str]:
        """Every registered kind, sorted."""
        return sorted(self._classes)

    def trainable_kinds(self) -> list[str]:
        """Kinds the trainer can make (an imported-only kind sets ``trainable = False``)."""
        return [k for k in self.kinds() if getattr(self._classes[k], "trainable", True)]

    def model_class(self, kind: str) -> Any:
        try:
            return self._classes[kind]
        except KeyError:
            known = ", ".join(self.kinds())
            raise ConfigError(f"unknown model kind {kind!r}; known kinds: {known}") from None

    def title(self, kind: str) -> str:
        """The kind in words ("variational autoencoder"), or its name when the class gives none."""
        return str(getattr(self.model_class(kind), "title", "") or kind)

    def config_class(self, kind: str) -> Any:
        return self.model_class(kind).config_class

    def config_from_dict(self, data: dict[str, Any]) -> Any:
        """Rebuild a config from its ``to_dict()`` form; the dict names its own kind."""
        if not isinstance(data, dict) or "kind" not in data:
            raise ConfigError("model config must be a JSON object with a 'kind' key")
        return self.config_class(str(data["kind"])).from_dict(data)

    def build(self, config: Any) -> Any:
        """A fresh model for ``config``."""
        return self.model_class(config.kind)(config)
