"""What a user may say about a foreign model file, and what the importer worked out instead.

Every field left at None means "from the file, or else inferred from data": a file that records a
choice (a Keras activation, an ONNX graph's shapes) is followed; a choice the file leaves open (a
PyTorch state_dict's activations, the input pixel range) is tried on sample images and the candidate
with the lowest reconstruction error is kept. A user's explicit choice always wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from explorer.errors import CheckpointError

# input_shape (C, H, W) -> float32 images (N, C, H, W) in [0, 1] to try candidates on
SampleImages = Callable[[tuple[int, int, int]], np.ndarray]


@dataclass(frozen=True)
class ImportOptions:
    kind: str | None = None  # None: from the file (two encoder heads or outputs make a VAE)
    input_shape: tuple[int, int, int] | None = None
    activation: str | None = None  # hidden layers
    latent_activation: str | None = None  # after the encoder's last layer
    output_activation: str | None = None  # after the decoder's last layer: sigmoid, tanh, identity
    input_range: str | None = None  # unit ([0, 1]) or symmetric ([-1, 1])
    dataset: str | None = None  # the images inference tries candidates on (default: by input shape)

    def chosen(self) -> dict[str, Any]:
        """The options the user set, by name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


# what each option is called in messages and reports
OPTION_LABELS = {
    "kind": "kind",
    "input_shape": "input shape",
    "activation": "hidden activation",
    "latent_activation": "latent activation",
    "output_activation": "output activation",
    "input_range": "input range",
    "dataset": "dataset",
}


def option_label(name: str) -> str:
    return OPTION_LABELS.get(name, name.replace("_", " "))


class OptionError(CheckpointError):
    """A refusal the user resolves by setting one import option; ``option`` names its ``ImportOptions`` field.

    The message says what to set in plain words; the command line adds its flag and the app its field label.
    """

    def __init__(self, message: str, *, option: str) -> None:
        super().__init__(message)
        self.option = option


_SOURCES = {"file": "from the file", "user": "your choice"}


@dataclass
class Decision:
    """How one open choice was settled: ``source`` is "file", "user", "inferred" (tried on sample images), or
    "assumed" (the explorer's convention, when no sample images were available)."""

    name: str
    value: str
    source: str
    runner_up: str | None = None
    error: float | None = None  # reconstruction MSE of the kept candidate on the sample
    runner_up_error: float | None = None

    def describe(self) -> str:
        what = option_label(self.name)
        if self.source == "inferred" and None not in (self.runner_up, self.error, self.runner_up_error):
            ratio = (self.runner_up_error or 0.0) / max(self.error or 0.0, 1e-12)
            return (
                f"{what}: {self.value}, inferred (reconstruction error {self.error:.4g}; "
                f"next best {self.runner_up}: {self.runner_up_error:.4g}, {ratio:.1f}x higher)"
            )
        return f"{what}: {self.value} ({_SOURCES.get(self.source, self.source)})"


@dataclass
class ImportReport:
    """What an import found and decided; stored in the checkpoint's config notes and shown to the user."""

    source: str  # format label, e.g. "onnx", "torch state_dict"
    files: list[str]
    decisions: list[Decision] = field(default_factory=list)
    remarks: list[str] = field(default_factory=list)
    shapes: dict[str, str] = field(default_factory=dict)  # e.g. {"encoder": "784-128-64-32", "decoder": ...}
    architecture: str = ""  # what a graph turned out to be ("convolutional", "dense"), where no backbone says

    def to_dict(self) -> dict[str, Any]:
        out = {
            "imported_from": self.source,
            "files": list(self.files),
            # errors to 6 significant digits: the same file gives the same checkpoint bytes on any run
            "decisions": [
                {**vars(d), **{k: _rounded(getattr(d, k)) for k in ("error", "runner_up_error")}}
                for d in self.decisions
            ],
            "remarks": list(self.remarks),
            "shapes": dict(self.shapes),
        }
        if self.architecture:
            out["architecture"] = self.architecture
        return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6g}")
