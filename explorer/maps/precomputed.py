"""Latents computed elsewhere, read for a map instead of encoding the images again: a cluster encodes, a laptop
explores.

Two layouts are read:

- a folder written by ``python -m explorer encode`` (its manifest names the checkpoint that made the latents,
  by SHA-256, and every column);
- Parquet written by any other program: a file, a folder of files or a glob, with one row per image, the
  latent vector in a list column (``latent_column``; by default the one named latent, latents, embedding,
  embeddings or z), the image's index in the dataset's source in ``id_column`` (default: the row order), and
  optionally each image's reconstruction error in ``error_column``.

Rows are looked up by the source's image index: a map of a subset takes the rows of the images it holds.
numpy and pyarrow only; nothing here runs a model.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from explorer.errors import DatasetError, ExplorerError
from explorer.maps.encode import Encoded
from explorer.maps.pipeline import latents_key
from explorer.maps.shards import read_manifest, read_shards
from explorer.settings import current as current_settings
from explorer.store import DiskCache, budget, sha256

LATENT_COLUMNS = ("latent", "latents", "embedding", "embeddings", "z")  # looked for when no column is named
MANIFEST = "manifest.json"  # explorer.maps.shards' manifest


@dataclass(frozen=True)
class Precomputed:
    """Latents read from disk, one row per image of a source, rows in ``ids`` order (ascending, unique)."""

    ids: np.ndarray  # (N,) int64: each row's index in the dataset's source
    latents: np.ndarray  # (N, L) float32
    recon_error: np.ndarray  # (N,) float32; NaN where the file has none
    where: str  # the path, for messages
    checkpoint: str | None = None  # SHA-256 of the checkpoint file that made them, when the file says
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    code_name: str = "latent dimension"

    @property
    def digest(self) -> str:
        """SHA-256 of the ids and latents: what a map made from them is keyed by, beside the images."""
        return sha256(self.ids.tobytes() + self.latents.tobytes())

    @property
    def latent_dim(self) -> int:
        return int(self.latents.shape[1])

    @property
    def nbytes(self) -> int:
        return int(
            self.ids.nbytes + self.latents.nbytes + self.recon_error.nbytes + sum(a.nbytes for a in self.stats.values())
        )

    def encoded(self, index: np.ndarray) -> Encoded:
        """The rows of the source's images ``index`` (in that order), as an encoder's output; DatasetError when
        some of them have no row."""
        index = np.asarray(index, dtype=np.int64)
        at = np.searchsorted(self.ids, index)
        found = (at < len(self.ids)) & (self.ids[np.minimum(at, len(self.ids) - 1)] == index)
        if not found.all():
            missing = index[~found]
            raise DatasetError(
                f"{self.where} has no latents for {len(missing):,} of the {len(index):,} images chosen "
                f"(image {int(missing[0])} first); encode the whole source, or map fewer images"
            )
        stats = {k: v[at] for k, v in self.stats.items()}
        return Encoded(self.latents[at], self.recon_error[at], stats, dict(self.titles), self.code_name)


def read_precomputed(
    path: str | os.PathLike,
    *,
    latent_column: str | None = None,
    id_column: str | None = None,
    error_column: str | None = None,
) -> Precomputed:
    """The latents at ``path``: an ``encode`` folder, or Parquet from another program (see the module's text).
    Anything that cannot be used raises DatasetError naming the file and the problem."""
    where = str(path)
    if Path(where, MANIFEST).is_file():
        return _from_encode_folder(where)
    files = _parquet_files(where)
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(files[0])
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(f"{files[0]} cannot be read as Parquet ({exc})") from None
    names = list(schema.names)
    column = latent_column or next((c for c in LATENT_COLUMNS if c in names), None)
    if column is None or column not in names:
        wanted = repr(latent_column) if latent_column else "a latent column (" + ", ".join(LATENT_COLUMNS) + ")"
        raise DatasetError(f"{where} has no {wanted}; its columns: {', '.join(names)}; name one with latent_column")
    for named in (id_column, error_column):
        if named is not None and named not in names:
            raise DatasetError(f"{where} has no column {named!r}; its columns: {', '.join(names)}")
    wanted_columns = [c for c in (column, id_column, error_column) if c is not None]
    try:
        table = pa.concat_tables([pq.read_table(f, columns=wanted_columns) for f in files], promote_options="default")
    except (OSError, pa.ArrowException) as exc:
        raise DatasetError(
            f"{where}: the files do not read as one table of {', '.join(wanted_columns)} ({exc})"
        ) from None
    latents = _vectors(table.column(column), f"{where}, column {column!r}")
    n = len(latents)
    ids = (
        np.arange(n, dtype=np.int64) if id_column is None else _whole_numbers(table.column(id_column), where, id_column)
    )
    error = np.full(n, np.nan, np.float32)
    if error_column is not None:
        error = np.asarray(table.column(error_column).to_numpy(zero_copy_only=False), dtype=np.float32)
    order = np.argsort(ids, kind="stable")
    ids, latents, error = ids[order], latents[order], error[order]
    if n > 1 and (dup := np.flatnonzero(ids[1:] == ids[:-1])).size:
        twice = int(ids[dup[0]])
        raise DatasetError(f"{where}: image {twice} has {int((ids == twice).sum())} rows; each image needs one")
    return Precomputed(ids, latents, error, where)


def _from_encode_folder(where: str) -> Precomputed:
    try:
        manifest, shards = read_manifest(where), read_shards(where)
    except ExplorerError as exc:
        raise DatasetError(str(exc)) from None
    return Precomputed(
        shards.ids,
        shards.latents,
        shards.recon_error,
        where,
        manifest.checkpoint,
        shards.stats,
        dict(manifest.stat_titles),
        manifest.code_name,
    )


def _parquet_files(where: str) -> list[str]:
    if os.path.isdir(where):
        files = sorted(str(p) for p in Path(where).rglob("*.parquet"))
    elif os.path.isfile(where):
        files = [where]
    else:
        files = sorted(glob.glob(where, recursive=True))
    if not files:
        raise DatasetError(f"no Parquet file at {where} (a file, a folder of .parquet files, or a glob)")
    return files


def _vectors(column, what: str) -> np.ndarray:
    """A list column of equal-length numeric vectors as (N, L) float32; ragged, empty or non-finite ones raise."""
    import pyarrow as pa

    arr = column.combine_chunks()
    if pa.types.is_fixed_size_list(arr.type):
        dim = arr.type.list_size
        flat = arr.flatten()
    elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        if arr.null_count:
            raise DatasetError(f"{what}: {arr.null_count:,} rows have no vector")
        lengths = np.asarray(arr.value_lengths().to_numpy(zero_copy_only=False))
        dim = int(lengths[0]) if len(lengths) else 0
        if len(lengths) and (lengths != dim).any():
            bad = int(np.flatnonzero(lengths != dim)[0])
            raise DatasetError(
                f"{what}: vectors of different lengths ({dim} in row 0, {int(lengths[bad])} in row {bad})"
            )
        flat = arr.flatten()
    else:
        raise DatasetError(f"{what} holds {arr.type}, not vectors (a list of numbers per row)")
    if not (pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)):
        raise DatasetError(f"{what} holds lists of {flat.type}, not numbers")
    if dim < 1:
        raise DatasetError(f"{what} holds empty vectors")
    out = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
    if (broken := ~np.isfinite(out).all(axis=1)).any():
        raise DatasetError(
            f"{what}: {int(broken.sum()):,} vectors hold NaN or infinite numbers (row {int(np.flatnonzero(broken)[0])} first)"
        )
    return out


def _whole_numbers(column, where: str, name: str) -> np.ndarray:
    import pyarrow as pa

    arr = column.combine_chunks()
    if not pa.types.is_integer(arr.type) or arr.null_count:
        raise DatasetError(f"{where}: column {name!r} must hold an image index (a whole number) in every row")
    ids = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.int64)
    if len(ids) and ids.min() < 0:
        raise DatasetError(f"{where}: column {name!r} holds negative image indices")
    return ids


def host_latents(name: str) -> tuple[Precomputed, str | None] | None:
    """The latents computed elsewhere for the host's dataset ``name`` (its ``latents`` option) and what made
    them (a checkpoint's SHA-256 or name; None when neither the files nor the entry say), or None when it has
    none. Read once per change of the files, kept in the "maps" budget."""
    entry = next((e for e in current_settings().data_sources if e.name == name), None)
    if entry is None or entry.latents is None:
        return None
    key = ("host latents", entry, _files_stamp(entry.latents))
    cache = budget("maps")
    if (hit := cache.get(key)) is None:
        pre = read_precomputed(entry.latents, **entry.latent_options())
        hit = (pre, pre.checkpoint or entry.checkpoint)
        cache.put(key, hit)
    return hit


def _files_stamp(location: str) -> tuple:
    """Names, sizes and times of the files at ``location`` (a file, a folder, a glob): changes when they do."""
    if os.path.isdir(location):
        paths = sorted(str(p) for p in Path(location).rglob("*") if p.is_file())
    else:
        paths = sorted(glob.glob(location, recursive=True))
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            continue
        out.append((p, st.st_size, st.st_mtime_ns))
    return tuple(out)


def seed_latents(
    found: tuple[Precomputed, str | None],
    *,
    checkpoint: tuple[str, str, int],
    source_index: np.ndarray,
    data_key: str,
    cache: DiskCache,
) -> tuple[str | None, str]:
    """Put the precomputed latents of a subset's images where the map pipeline looks for a model's latents
    (``latents_key``), when they are the checkpoint's: its map is then fitted without encoding anything.

    ``checkpoint`` is (name, SHA-256, latent size); ``data_key`` the images' digest. Returns the data key the
    map is to be made under (the images' and the latents' digests together, so a map of the checkpoint's own
    encoding is never taken for it), or None when the latents are not used; and a sentence for the person
    either way: where they came from, or why the checkpoint's own are computed instead."""
    pre, made_by = found
    name, digest, latent_dim = checkpoint
    shown_file = Path(pre.where.rstrip("/")).name or pre.where  # the file's name: the host's paths stay its own
    if made_by is None:
        return None, (
            f"The latents in {shown_file} do not say which checkpoint made them (set checkpoint = NAME in the data "
            f"file): {name}'s are computed here."
        )
    if made_by not in (name, digest):
        shown = made_by[:12] + "…" if len(made_by) == 64 else made_by
        return None, f"The latents in {shown_file} were made by {shown}, not {name}: {name}'s are computed here."
    if pre.latent_dim != latent_dim:
        raise DatasetError(f"{shown_file} holds {pre.latent_dim}-number latents; {name} makes {latent_dim}")
    key = sha256(f"{data_key}/precomputed/{pre.digest}".encode())
    if latents_key(digest, key) not in cache:
        cache.put(latents_key(digest, key), pre.encoded(source_index).to_bytes())
        if latents_key(digest, key) not in cache:  # the map reads them from there: a cache that cannot be written
            return None, f"The latents in {shown_file} cannot be used: the cache folder cannot be written."
    return key, f"latents read from {shown_file}"
