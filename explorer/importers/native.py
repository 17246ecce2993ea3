"""The importer's loader for this explorer's own checkpoints: loaded as they are, keeping their notes."""

from __future__ import annotations

from explorer.checkpoint import load_checkpoint
from explorer.errors import CheckpointError
from explorer.importers.options import ImportOptions, ImportReport, SampleImages
from explorer.models.base import Autoencoder


def load_native(
    files: list[tuple[str, bytes]], options: ImportOptions, sample: SampleImages | None
) -> tuple[Autoencoder, ImportReport]:
    """A latent-explorer checkpoint records its own architecture and choices: options and samples are unused."""
    ((name, data),) = files
    report = ImportReport("latent-explorer checkpoint", [name])
    if options.chosen():
        report.remarks.append("a latent-explorer checkpoint records its own architecture; the options were not used")
    try:
        return load_checkpoint(data), report
    except CheckpointError as exc:  # read from bytes, the loader cannot name the file
        raise CheckpointError(f"{name}: {exc}") from None
