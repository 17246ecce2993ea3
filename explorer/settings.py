"""What a host can change without touching code: environment variables, read and checked in one place.

| variable                      | default                    | what it does                                          |
|-------------------------------|----------------------------|-------------------------------------------------------|
| EXPLORER_ALLOW_UPLOADS        | on                         | off hides "Your model" and dataset uploads            |
| EXPLORER_KEEP_UPLOADS         | off                        | on keeps uploaded files on disk, by SHA-256 digest    |
| EXPLORER_KEPT_MAX_MB          | 1024                       | total size of the kept uploads; oldest go first       |
| EXPLORER_KEPT_MAX_DAYS        | 30                         | kept uploads unused for longer are deleted            |
| EXPLORER_MAX_UPLOAD_MB        | 200                        | the largest file a browser may upload                 |
| EXPLORER_CACHE_DIR            | ~/.cache/latent-explorer   | maps, latents and kept uploads                        |
| EXPLORER_CACHE_MAX_MB         | 2048                       | size of the map cache; oldest go first                |
| EXPLORER_DEFAULT_CHECKPOINT   | fashion-mnist-vae-conv16   | the shipped checkpoint a new visitor sees first       |
| EXPLORER_MAX_CONCURRENT_MAPS  | 1                          | maps computed at once; more requests wait their turn  |
| EXPLORER_MAPS_MEMORY_MB       | 160                        | maps held in memory for every session together        |
| EXPLORER_MODELS_MEMORY_MB     | 64                         | models held in memory (weights; the least used go)    |
| EXPLORER_IMAGES_MEMORY_MB     | 128                        | images held in memory: datasets, and subsets of them  |
| EXPLORER_RESULTS_MEMORY_MB    | 96                         | what pages measured (figures, grids, curves, scores)  |
| EXPLORER_CACHE_TTL_HOURS      | 6                          | anything held in memory and unused this long goes     |
| EXPLORER_DATA                 | (none)                     | your datasets: name=location pairs, comma-separated   |
| EXPLORER_DATA_FILE            | (none)                     | your datasets in a TOML file ([data.NAME] path = ...) |

EXPLORER_DATA names datasets on the server's disk, e.g. ``celeba=/data/celeba,in1k=/data/in1k/*.parquet``: a
location is a folder of images, Parquet files, WebDataset .tar shards or a .npy/.npz array (a path, a folder, a
glob, or a brace pattern such as ``shard-{0000..0099}.tar``). EXPLORER_DATA_FILE names a TOML file with one table
per dataset, for the options a pair cannot hold::

    [data.celeba]
    path = "/data/celeba"            # relative paths are taken from the file's folder
    [data.in1k]
    path = "/data/in1k/*.parquet"
    image_column = "image"           # optional: found by its type when left out
    label_column = "label"           # optional

Switches take 1/0, true/false, yes/no or on/off; an empty value means the default. Every bad value is
reported at once, by name, with what it must be: a host sees all its typos in one error, not one per restart.
This module is pure (no Streamlit) so the command line, the app and the tests read the same settings.
"""

from __future__ import annotations

import functools
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from explorer.errors import ExplorerError

PREFIX = "EXPLORER_"
# The ceiling of EXPLORER_MAX_UPLOAD_MB: explorer.untrusted.MAX_FILE_BYTES (2 GiB), the largest model file any
# reader here accepts; a test keeps the two equal (untrusted imports this module, so it cannot be imported here).
MAX_UPLOAD_MB_CEILING = 2048
# A checkpoint is named by its file's stem in checkpoints/: letters, digits, dot, dash, underscore, no leading
# dot. Nothing that could climb out of the folder or name a hidden file.
_CHECKPOINT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# What the upload pages show when a host's proxy breaks uploads. Streamlit's uploader then marks the file with
# "AxiosError: Request failed with status code 403" (XSRF cookie lost or rewritten on the way) or 413 (the
# proxy's or the server's body size limit); docs/DEPLOY.md says what to change.
UPLOAD_TROUBLE_HELP = (
    "If a file is marked “Request failed with status code 403”, the server refused the upload's XSRF check: "
    "the site's proxy dropped or rewrote its cookie. Code 413 means the file is over a size limit (the proxy's "
    "or the server's). Whoever hosts this explorer can fix both; see docs/DEPLOY.md, “Uploads behind a proxy”."
)


# The built-in datasets' names (explorer.data.dataset_names; a test keeps the two equal): a dataset of the host's
# may not take one. Its name is what the sidebar lists, so: letters, digits, '.', '-', '_', up to 64.
RESERVED_DATA_NAMES = ("digits", "fashion-mnist", "mnist")
_DATA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DATA_OPTIONS = ("image_column", "label_column")  # passed to the source kind that opens the location
# latents computed elsewhere for this dataset (explorer.maps.precomputed): a path relative to the file, the
# columns to read, and the checkpoint that made them (a name in checkpoints/ or a SHA-256) when no manifest says
_LATENT_OPTIONS = ("latents", "latent_column", "id_column", "error_column", "checkpoint")


class SettingsError(ExplorerError):
    """One or more EXPLORER_* environment variables hold a value that cannot be used."""


@dataclass(frozen=True)
class DataEntry:
    """One dataset of the host's: the name the sidebar lists, where it is, and the options of its kind."""

    name: str
    location: str
    image_column: str | None = None
    label_column: str | None = None
    latents: str | None = None  # a file, folder or glob of latents computed elsewhere (explorer.maps.precomputed)
    latent_column: str | None = None
    id_column: str | None = None
    error_column: str | None = None
    checkpoint: str | None = None  # what made the latents, when they do not say: a checkpoint's name or SHA-256

    def options(self) -> dict[str, str | None]:
        """What the source kind that opens ``location`` is given."""
        return {k: getattr(self, k) for k in _DATA_OPTIONS}

    def latent_options(self) -> dict[str, str | None]:
        """How its precomputed latents are read (``latents`` is None when it has none)."""
        return {k: getattr(self, k) for k in _LATENT_OPTIONS if k not in ("latents", "checkpoint")}


@dataclass(frozen=True)
class Settings:
    allow_uploads: bool = True
    keep_uploads: bool = False
    kept_max_mb: int = 1024
    kept_max_days: float = 30.0
    max_upload_mb: int = 200
    cache_dir: Path = Path("~/.cache/latent-explorer").expanduser()
    cache_max_mb: int = 2048
    default_checkpoint: str = "fashion-mnist-vae-conv16"
    max_concurrent_maps: int = 1
    # what one server holds in memory for all its sessions, by kind; each gives up its least recently used
    maps_memory_mb: int = 160
    models_memory_mb: int = 64
    images_memory_mb: int = 128
    results_memory_mb: int = 96
    cache_ttl_hours: float = 6.0
    data: tuple[DataEntry, ...] = ()  # from EXPLORER_DATA
    data_file: tuple[DataEntry, ...] = ()  # from the file EXPLORER_DATA_FILE names

    @property
    def data_sources(self) -> tuple[DataEntry, ...]:
        """The host's datasets, in the order given: the file's, then EXPLORER_DATA's."""
        return self.data_file + self.data

    @property
    def kept_dir(self) -> Path:
        """Where kept uploads live: beside the maps, so one volume holds everything a host must persist."""
        return self.cache_dir / "uploads"

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mb * 2**20

    @property
    def kept_max_bytes(self) -> int:
        return self.kept_max_mb * 2**20

    @property
    def kept_max_age_s(self) -> float:
        return self.kept_max_days * 86400.0

    def memory_bytes(self, cache: str) -> int:
        """The byte bound of one of the server's memory caches: "maps", "models", "images" or "results"."""
        return int(getattr(self, f"{cache}_memory_mb")) * 2**20

    @property
    def cache_ttl_s(self) -> float:
        return self.cache_ttl_hours * 3600.0


def _switch(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError("is not a switch: use 1/0, true/false, yes/no or on/off")


def _whole(lo: int, hi: int, unit: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"is not a whole number of {unit}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi} {unit}")
        return value

    return parse


def _amount(unit: str, most: float):
    """A parser of a positive, finite number of ``unit`` up to ``most`` (days a kept upload lives, hours of TTL)."""

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"is not a number of {unit}") from None
        if not (math.isfinite(value) and 0 < value <= most):
            raise ValueError(f"must be more than 0 and at most {most:g} {unit}")
        return value

    return parse


def _folder(text: str) -> Path:
    # a relative folder is taken from the working directory now, so the whole process agrees on one place
    return Path(text.strip()).expanduser().absolute()


def _checkpoint_name(text: str) -> str:
    name = text.strip()
    if name.endswith(".safetensors"):
        name = name[: -len(".safetensors")]  # the file name is as good as its stem
    if not _CHECKPOINT_NAME.fullmatch(name):
        raise ValueError(
            "must be the name of a file in checkpoints/ without .safetensors (letters, digits, '.', '-', '_'), "
            "e.g. fashion-mnist-vae-conv16"
        )
    return name


def _data_name(name: str) -> str:
    if not _DATA_NAME.fullmatch(name):
        raise ValueError(f"names a dataset {name!r}: use letters, digits, '.', '-', '_' (at most 64)")
    if name in RESERVED_DATA_NAMES:
        raise ValueError(f"names a dataset {name!r}, the name of a built-in one; choose another")
    return name


def _location(text: str, base: Path | None = None) -> str:
    text = text.strip()
    if not text:
        raise ValueError("gives a dataset no location")
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else (base or Path.cwd()) / path)


def _split_pairs(text: str) -> list[str]:
    """Commas separate pairs, except inside braces (``shard-{a,b}.tar`` is one location)."""
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:k])
            start = k + 1
    return [*parts, text[start:]]


def _data_pairs(text: str) -> tuple[DataEntry, ...]:
    entries: list[DataEntry] = []
    for pair in _split_pairs(text):
        if not pair.strip():
            continue
        name, eq, location = pair.partition("=")
        if not eq:
            raise ValueError(f"has {pair.strip()!r}, not name=location (e.g. celeba=/data/celeba)")
        entries.append(DataEntry(_data_name(name.strip()), _location(location)))
    _no_repeats(entries)
    return tuple(entries)


def _no_repeats(entries: list[DataEntry] | tuple[DataEntry, ...]) -> None:
    names = [e.name for e in entries]
    if twice := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"names {', '.join(twice)} more than once")


def _data_file(text: str) -> tuple[DataEntry, ...]:
    path = Path(text.strip()).expanduser().absolute()
    try:
        st = path.stat()
    except OSError:
        raise ValueError("is not a file") from None
    return _read_data_file(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)  # settings are read on every run: the file is parsed again only when it changes
def _read_data_file(path: str, mtime_ns: int, size: int) -> tuple[DataEntry, ...]:
    if size > 2**20:
        raise ValueError("is over 1 MB, too large for a list of datasets")
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot be read as TOML ({exc})") from None
    tables = doc.get("data")
    if set(doc) - {"data"} or not isinstance(tables, dict):
        raise ValueError('must hold [data.NAME] tables, each with path = "..."')
    entries = []
    for name, table in tables.items():
        if not isinstance(table, dict) or not isinstance(table.get("path"), str):
            raise ValueError(f'has [data.{name}] without path = "..."')
        allowed = (*_DATA_OPTIONS, *_LATENT_OPTIONS)
        if unknown := sorted(set(table) - {"path", *allowed}):
            raise ValueError(f"has [data.{name}] with {', '.join(unknown)}; it may hold path, {', '.join(allowed)}")
        if any(not isinstance(table.get(k, ""), str) for k in allowed):
            raise ValueError(f"has [data.{name}] with an option that is not text")
        options = {k: table[k] for k in allowed if table.get(k)}
        if "latents" in options:
            options["latents"] = _location(options["latents"], Path(path).parent)
        entries.append(DataEntry(_data_name(name), _location(table["path"], Path(path).parent), **options))
    return tuple(entries)


# field -> (variable, parser); each parser raises ValueError with the end of a sentence that starts with the value
_FIELDS: dict[str, tuple[str, Callable[[str], object]]] = {
    "allow_uploads": ("EXPLORER_ALLOW_UPLOADS", _switch),
    "keep_uploads": ("EXPLORER_KEEP_UPLOADS", _switch),
    "kept_max_mb": ("EXPLORER_KEPT_MAX_MB", _whole(1, 1_048_576, "MB")),
    "kept_max_days": ("EXPLORER_KEPT_MAX_DAYS", _amount("days", 3650)),
    "max_upload_mb": ("EXPLORER_MAX_UPLOAD_MB", _whole(1, MAX_UPLOAD_MB_CEILING, "MB")),
    "cache_dir": ("EXPLORER_CACHE_DIR", _folder),
    "cache_max_mb": ("EXPLORER_CACHE_MAX_MB", _whole(16, 1_048_576, "MB")),
    "default_checkpoint": ("EXPLORER_DEFAULT_CHECKPOINT", _checkpoint_name),
    "max_concurrent_maps": ("EXPLORER_MAX_CONCURRENT_MAPS", _whole(1, 64, "maps")),
    "maps_memory_mb": ("EXPLORER_MAPS_MEMORY_MB", _whole(0, 1_048_576, "MB")),
    "models_memory_mb": ("EXPLORER_MODELS_MEMORY_MB", _whole(0, 1_048_576, "MB")),
    "images_memory_mb": ("EXPLORER_IMAGES_MEMORY_MB", _whole(0, 1_048_576, "MB")),
    "results_memory_mb": ("EXPLORER_RESULTS_MEMORY_MB", _whole(0, 1_048_576, "MB")),
    "cache_ttl_hours": ("EXPLORER_CACHE_TTL_HOURS", _amount("hours", 24 * 365)),
    "data": ("EXPLORER_DATA", _data_pairs),
    "data_file": ("EXPLORER_DATA_FILE", _data_file),
}
VARIABLES = tuple(var for var, _ in _FIELDS.values())


def load(env: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``env`` (default: the process environment); unset or empty variables keep their default.

    Raises SettingsError naming every variable that is wrong, what it holds and what it must be."""
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    problems: list[str] = []
    defaults = Settings()
    for field, (var, parse) in _FIELDS.items():
        raw = env.get(var, "")
        if not raw.strip():
            continue
        try:
            values[field] = parse(raw)
        except ValueError as exc:
            default = getattr(defaults, field)
            problems.append(f"{var}={raw!r} {exc} (unset it for the default, {default if default != () else 'none'})")
    if not problems:
        try:
            _no_repeats([e for k in ("data_file", "data") for e in cast(tuple[DataEntry, ...], values.get(k, ()))])
        except ValueError as exc:
            problems.append(f"EXPLORER_DATA_FILE and EXPLORER_DATA together {exc}")
    if problems:
        raise SettingsError("; ".join(problems))
    return Settings(**values)  # type: ignore[arg-type]


def current() -> Settings:
    """The settings of this process, read now (a few dictionary look-ups: cheaper than any cache invalidation)."""
    return load(os.environ)


def upload_cap_mb(settings: Settings, server_max_upload_mb: int) -> int:
    """The upload limit to give a file uploader: EXPLORER_MAX_UPLOAD_MB, but never above the server's own
    ``server.maxUploadSize``, which Streamlit enforces on the request body before the app sees a byte."""
    return max(1, min(settings.max_upload_mb, int(server_max_upload_mb)))
