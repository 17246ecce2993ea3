"""Encode a whole source into Parquet shards (``explorer.maps.shards``), resumably: the plan both engines
share, the step that turns one batch of a source into rows, and the local engine.

The local engine streams ``batches`` of the source a shard at a time through ``per_image`` (the one loop over
a model, in ``explorer.maps.encode``) and writes each shard as soon as it is whole; the Ray engine
(``explorer.maps.ray_engine``) runs the same ``rows_of`` in its workers and writes the same shards.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from explorer.data.source import Batch, ImageSource, batches
from explorer.errors import ExplorerError
from explorer.maps.encode import per_image
from explorer.maps.shards import Manifest, Rows, SourceSpec, prepare, write_shard

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

DEVICES = ("auto", "cpu", "cuda")
RESERVED = {"id", "latent", "recon_error", "label", "where"}


@dataclass(frozen=True)
class EncodeOptions:
    """How a run reads and writes: images per batch and per shard, the first ``limit`` only, the device."""

    batch_size: int = 256
    shard_size: int = 16384
    limit: int | None = None
    device: str = "auto"
    overwrite: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.shard_size < 1:
            raise ExplorerError(f"batch and shard sizes must be at least 1 (got {self.batch_size}, {self.shard_size})")
        if self.limit is not None and self.limit < 1:
            raise ExplorerError(f"--limit must be at least 1, got {self.limit}")
        if self.device not in DEVICES:
            raise ExplorerError(f"unknown device {self.device!r}; one of {', '.join(DEVICES)}")


@dataclass
class Summary:
    """What a run did: images encoded and skipped in this run, shards written and kept from an earlier run."""

    encoded: int = 0
    skipped: int = 0
    written: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return (self.encoded + self.skipped) / self.seconds if self.seconds > 0 else 0.0


# Callbacks a run reports through: images read (encoded or skipped), and each shard once written.
Advance = Callable[[int], None]
ShardWritten = Callable[[int, Rows], None]


def ignore(*_args) -> None:
    pass


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` where torch sees a GPU, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ExplorerError("--device cuda, but torch sees no CUDA GPU here (try --device auto)")
    return device


def rows_of(model: Autoencoder, batch: Batch, stats: tuple[str, ...]) -> Rows:
    """One batch of a source through the model: its rows, and the images it skipped."""
    run = per_image(model, batch.images, batch_size=max(1, len(batch.ids)))
    missing = set(stats) - set(run.stats)
    if len(batch.ids) and missing:
        raise ExplorerError(f"the model reported no {sorted(missing)} for this batch")
    return Rows(
        batch.ids.astype(np.int64),
        run.codes.reshape(len(batch.ids), model.latent_dim),
        run.mse,
        {s: run.stats.get(s, np.zeros(0, np.float32)) for s in stats},
        np.asarray(batch.labels, np.int64),
        list(batch.where),
        list(batch.skipped),
    )


def stat_names(model: Autoencoder, source: ImageSource, count: int) -> tuple[str, ...]:
    """The per-image statistics the model reports, asked of the first images that can be read."""
    for batch in batches(source, 16, model.input_shape, stop=min(count, 256)):
        if len(batch.ids):
            names = tuple(sorted(per_image(model, batch.images[:2]).stats))
            clash = RESERVED & set(names)
            if clash:
                raise ExplorerError(f"the model's statistics {sorted(clash)} clash with the shard columns")
            return names
    return tuple(sorted(model.stat_titles))


def plan(
    model: Autoencoder,
    digest: str,
    spec: SourceSpec,
    source: ImageSource,
    folder,
    options: EncodeOptions,
) -> tuple[Manifest, list[int], list[int]]:
    """(the manifest, shards to write, shards kept from an earlier run), the folder made ready."""
    length = len(source)
    count = length if options.limit is None else min(options.limit, length)
    manifest = Manifest(
        checkpoint=digest,
        source=spec,
        length=length,
        count=count,
        shard_size=options.shard_size,
        latent_dim=model.latent_dim,
        stats=stat_names(model, source, count),
        stat_titles=dict(model.stat_titles),
        code_name=model.code_name,
        model_kind=model.kind,
    )
    todo, kept = prepare(folder, manifest, overwrite=options.overwrite)
    return manifest, todo, kept


def encode_local(
    model: Autoencoder,
    source: ImageSource,
    manifest: Manifest,
    todo: list[int],
    folder,
    *,
    batch_size: int = 256,
    advance: Advance = ignore,
    shard_written: ShardWritten = ignore,
) -> Summary:
    """Write shards ``todo`` in this process: each shard's images streamed ``batch_size`` at a time."""
    summary, t0 = Summary(), time.perf_counter()
    ranges = manifest.ranges()
    for k in todo:
        first, stop = ranges[k]
        parts = []
        for batch in batches(source, batch_size, model.input_shape, start=first, stop=stop):
            parts.append(rows_of(model, batch, manifest.stats))
            advance(len(batch.ids) + len(batch.skipped))
        rows = Rows.join(parts, manifest.latent_dim, manifest.stats)
        write_shard(folder, k, rows, manifest)
        summary.encoded += len(rows)
        summary.skipped += len(rows.skipped)
        summary.written.append(k)
        shard_written(k, rows)
    summary.seconds = time.perf_counter() - t0
    return summary
