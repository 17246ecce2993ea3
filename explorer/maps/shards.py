"""Encoded datasets on disk: a folder of Parquet shards and the manifest that says what made them.

    DIR/manifest.json         what made the shards: checkpoint digest, source, shard size, columns
    DIR/shard-00000.parquet   images [0, S) of the source, S the shard size
    DIR/shard-00001.parquet   images [S, 2S), and so on

A shard's rows, in id order: ``id`` (int64, the image's position in the source), ``latent`` (fixed-size
list<float32>, a VAE's posterior mean), ``recon_error`` (float32, per-pixel MSE), one float32 column per
per-image statistic of the model (a VAE's ``sigma`` and ``kl``, an SAE's ``l0``), ``label`` (int64, -1
unknown) and ``where`` (string: a path, a shard and key, a row). An image that could not be read has no
row; the shard's metadata lists it (id, reason) beside the range the shard covers.

A shard is written under a temporary name, flushed to disk and renamed, so a killed run leaves whole
shards only. A second run with the same checkpoint and source keeps every shard whose footer opens and
covers its range, and writes the others. pyarrow is imported inside the functions that use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from explorer.errors import DatasetError, ExplorerError
from explorer.store import atomic_write

FORMAT = "latent-explorer-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_META_KEY = b"latent_explorer"  # the Parquet schema metadata entry of a shard
BUILTIN = "builtin"  # a SourceSpec kind: a built-in dataset, re-opened by name
TABLE = "table"  # a SourceSpec kind: a location one of explorer.data.source's kinds claims


def explorer_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latent-explorer")
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class SourceSpec:
    """A source named by what opens it, not the open object: recorded in a manifest, and sent to Ray workers,
    which open it again themselves (``open``)."""

    kind: str  # BUILTIN or TABLE
    name: str
    location: str

    def open(self):
        from explorer.data.source import ArraySource, open_source

        if self.kind == BUILTIN:
            from explorer.data import load_dataset

            dataset, _, split = self.location.partition(":")
            return ArraySource(load_dataset(dataset, split or "test"))
        return open_source(self.name, self.location)


def source_spec(data: str) -> SourceSpec:
    """``--data``: a built-in dataset (``digits``, ``mnist``, ``fashion-mnist``, optionally ``name:split``, the
    test split by default), else a location (a folder, a file, a glob) one of the source kinds claims."""
    from explorer.data import SPLITS, dataset_names

    dataset, sep, split = data.partition(":")
    if dataset in dataset_names():
        if sep and split not in SPLITS:
            raise DatasetError(f"unknown split {split!r} in {data!r}; splits: {', '.join(SPLITS)}")
        return SourceSpec(BUILTIN, f"{dataset}:{split or 'test'}", f"{dataset}:{split or 'test'}")
    name = Path(data.rstrip("/")).name or data
    return SourceSpec(TABLE, name, data)


@dataclass(frozen=True)
class Manifest:
    """What made a folder of shards. Two runs write the same shards when ``same_run`` finds no difference;
    ``count`` (the first images encoded, ``--limit``) may differ: shards are ranges of the source either way."""

    checkpoint: str  # SHA-256 of the checkpoint file
    source: SourceSpec
    length: int  # images in the source
    count: int  # images encoded: the first ``count`` of the source
    shard_size: int
    latent_dim: int
    stats: tuple[str, ...] = ()  # the model's per-image statistics, one float32 column each
    stat_titles: dict[str, str] = field(default_factory=dict)
    code_name: str = "latent dimension"
    model_kind: str = ""
    explorer: str = field(default_factory=explorer_version)

    @property
    def columns(self) -> list[str]:
        return ["id", "latent", "recon_error", *self.stats, "label", "where"]

    def ranges(self) -> list[tuple[int, int]]:
        """(first, stop) of each shard: shard k holds images [k * S, min((k + 1) * S, count))."""
        return [(lo, min(lo + self.shard_size, self.count)) for lo in range(0, self.count, self.shard_size)]

    def difference(self, other: Manifest) -> str | None:
        """Why shards made under ``other`` cannot be kept under this manifest, or None when they can."""
        if self.checkpoint != other.checkpoint:
            return f"another checkpoint (SHA-256 {other.checkpoint[:12]}…, not {self.checkpoint[:12]}…)"
        if (self.source, self.length) != (other.source, other.length):
            return f"another source ({other.source.location!r}, {other.length:,} images)"
        if self.shard_size != other.shard_size:
            return f"another shard size ({other.shard_size:,}, not {self.shard_size:,})"
        if (self.latent_dim, self.stats) != (other.latent_dim, other.stats):
            return "other columns"
        return None

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc["stats"] = list(self.stats)
        doc["columns"] = self.columns
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **doc}

    @classmethod
    def from_dict(cls, doc: dict) -> Manifest:
        if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
            raise ExplorerError(f"not a manifest of {FORMAT} version {FORMAT_VERSION}")
        fields = {k: v for k, v in doc.items() if k in cls.__dataclass_fields__}
        fields["source"] = SourceSpec(**doc["source"])
        fields["stats"] = tuple(doc.get("stats", ()))
        return cls(**fields)


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.parquet"


def read_manifest(folder: str | os.PathLike) -> Manifest:
    path = Path(folder) / MANIFEST
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ExplorerError(f"{folder} holds no {MANIFEST}: no encoded shards there") from None
    except (OSError, ValueError, TypeError, KeyError, ExplorerError) as exc:
        raise ExplorerError(f"{path} cannot be read as a shard manifest ({exc})") from None


@dataclass
class Rows:
    """Encoded images as columns: ids (N,) int64, latents (N, L) float32, recon_error (N,) float32, stats
    {name: (N,) float32}, labels (N,) int64, where (N,) strings; and the (id, reason) of images skipped."""

    ids: np.ndarray
    latents: np.ndarray
    recon_error: np.ndarray
    stats: dict[str, np.ndarray]
    labels: np.ndarray
    where: list[str]
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, latent_dim: int, stats: tuple[str, ...]) -> Rows:
        z = np.zeros(0, np.float32)
        return cls(np.zeros(0, np.int64), np.zeros((0, latent_dim), np.float32), z, {s: z for s in stats}, z, [])

    @classmethod
    def join(cls, parts: list[Rows], latent_dim: int, stats: tuple[str, ...]) -> Rows:
        """The parts' rows in id order, with their skipped images."""
        parts = [cls.empty(latent_dim, stats), *parts]
        ids = np.concatenate([p.ids for p in parts]).astype(np.int64)
        order = np.argsort(ids, kind="stable")
        where = [w for p in parts for w in p.where]
        return cls(
            ids[order],
            np.concatenate([p.latents for p in parts]).astype(np.float32).reshape(-1, latent_dim)[order],
            np.concatenate([p.recon_error for p in parts]).astype(np.float32)[order],
            {s: np.concatenate([p.stats[s] for p in parts]).astype(np.float32)[order] for s in stats},
            np.concatenate([p.labels for p in parts]).astype(np.int64)[order],
            [where[i] for i in order],
            sorted(s for p in parts for s in p.skipped),
        )


def _write_durably(path: Path, write) -> None:
    """``write(tmp)`` then flush to disk and rename onto ``path``: a reader, or a run after a kill, finds the
    whole file or none. A temporary file a killed writer left behind is removed by ``prepare``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    try:  # the rename itself, on file systems that sync directories
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_shard(folder: str | os.PathLike, k: int, rows: Rows, manifest: Manifest) -> Path:
    """Write shard ``k`` (its range from the manifest) from rows that cover that range, encoded or skipped."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    first, stop = manifest.ranges()[k]
    covered = np.concatenate([rows.ids, np.array([i for i, _ in rows.skipped], np.int64)])
    if len(covered) != stop - first or not np.array_equal(np.sort(covered), np.arange(first, stop)):
        raise ExplorerError(f"shard {k}: rows do not cover images [{first}, {stop}) exactly once")
    dim = manifest.latent_dim
    latent = pa.FixedSizeListArray.from_arrays(pa.array(rows.latents.reshape(-1).astype(np.float32)), dim)
    columns = {
        "id": pa.array(rows.ids, pa.int64()),
        "latent": latent,
        "recon_error": pa.array(rows.recon_error, pa.float32()),
        **{name: pa.array(rows.stats[name], pa.float32()) for name in manifest.stats},
        "label": pa.array(rows.labels, pa.int64()),
        "where": pa.array(rows.where, pa.string()),
    }
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "checkpoint": manifest.checkpoint,
        "first": first,
        "stop": stop,
        "skipped": [[int(i), str(why)] for i, why in rows.skipped],
    }
    table = pa.table(columns).replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    path = Path(folder) / shard_name(k)
    _write_durably(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
    return path


def shard_info(path: Path) -> tuple[int, dict] | None:
    """(rows, the shard's metadata) read from the footer, or None when the file does not open as a shard."""
    import pyarrow.parquet as pq

    try:
        footer = pq.ParquetFile(path)
        meta = json.loads((footer.schema_arrow.metadata or {})[_META_KEY])
        return footer.metadata.num_rows, meta | {"columns": footer.schema_arrow.names}
    except Exception:  # a truncated, foreign or unreadable file: pyarrow raises many types
        return None


def shard_ok(folder: str | os.PathLike, k: int, manifest: Manifest) -> bool:
    """Whether shard ``k`` is on disk, opens, and covers its range for this manifest's checkpoint."""
    found = shard_info(Path(folder) / shard_name(k))
    if found is None:
        return False
    n, meta = found
    first, stop = manifest.ranges()[k]
    return (
        meta.get("checkpoint") == manifest.checkpoint
        and (meta.get("first"), meta.get("stop")) == (first, stop)
        and meta.get("columns") == manifest.columns
        and n + len(meta.get("skipped", [])) == stop - first
    )


def prepare(folder: str | os.PathLike, manifest: Manifest, *, overwrite: bool = False) -> tuple[list[int], list[int]]:
    """Make ``folder`` ready for the shards of ``manifest``: (shards still to write, shards kept).

    Refuses a folder holding another checkpoint's or source's shards unless ``overwrite`` (which deletes
    them); removes the temporary files of a killed run; writes the manifest before any shard."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ExplorerError(f"{folder} is a file, not a folder for shards")
    folder.mkdir(parents=True, exist_ok=True)
    for tmp in folder.glob(".shard-*.tmp"):
        tmp.unlink(missing_ok=True)
    old: Manifest | None = None
    why = None
    if (folder / MANIFEST).exists():
        try:
            old = read_manifest(folder)
            why = manifest.difference(old)
        except ExplorerError as exc:
            why = str(exc)
    elif any(folder.glob("shard-*.parquet")):
        why = f"shards without a {MANIFEST}"
    if why:
        if not overwrite:
            raise ExplorerError(
                f"{folder} holds shards of {why}; choose another --out, or pass --overwrite to delete them"
            )
        for path in folder.glob("shard-*.parquet"):
            path.unlink()
        (folder / MANIFEST).unlink(missing_ok=True)
        old = None
    atomic_write(folder / MANIFEST, json.dumps(manifest.to_dict(), indent=1).encode())
    todo: list[int] = []
    kept: list[int] = []
    for k in range(len(manifest.ranges())):
        (kept if old is not None and shard_ok(folder, k, manifest) else todo).append(k)
    return todo, kept


class Shards(NamedTuple):
    """An encoded dataset read back: ids (N,) int64, latents (N, L) float32, recon_error (N,) float32,
    stats {name: (N,) float32}, labels (N,) int64, where (N,) object array of str; in id order."""

    ids: np.ndarray
    latents: np.ndarray
    recon_error: np.ndarray
    stats: dict[str, np.ndarray]
    labels: np.ndarray
    where: np.ndarray


def read_shards(folder: str | os.PathLike) -> Shards:
    """Every shard the manifest names, joined; raises when one is missing or incomplete (a run to finish)."""
    import pyarrow.parquet as pq

    manifest = read_manifest(folder)
    missing = [shard_name(k) for k in range(len(manifest.ranges())) if not shard_ok(folder, k, manifest)]
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ExplorerError(
            f"{folder}: {shown} missing or incomplete; run `python -m explorer encode` again to finish it"
        )
    parts = [pq.read_table(Path(folder) / shard_name(k)) for k in range(len(manifest.ranges()))]
    dim = manifest.latent_dim
    if not parts:
        return Shards(*_unpack(Rows.empty(dim, manifest.stats)))
    import pyarrow as pa

    table = pa.concat_tables(parts)
    latent = table.column("latent").combine_chunks()
    return Shards(
        table.column("id").to_numpy().astype(np.int64),
        np.asarray(latent.flatten().to_numpy(), np.float32).reshape(-1, dim),
        table.column("recon_error").to_numpy().astype(np.float32),
        {s: table.column(s).to_numpy().astype(np.float32) for s in manifest.stats},
        table.column("label").to_numpy().astype(np.int64),
        table.column("where").to_numpy(zero_copy_only=False).astype(object),
    )


def _unpack(rows: Rows) -> tuple:
    return rows.ids, rows.latents, rows.recon_error, rows.stats, rows.labels, np.array(rows.where, dtype=object)


def read_skipped(folder: str | os.PathLike) -> list[tuple[int, str]]:
    """(id, reason) of every image the shards' runs could not read, in id order."""
    out: list[tuple[int, str]] = []
    for k in range(len(read_manifest(folder).ranges())):
        found = shard_info(Path(folder) / shard_name(k))
        if found is not None:
            out.extend((int(i), str(why)) for i, why in found[1].get("skipped", []))
    return sorted(out)
