"""Everything the views share, cached: checkpoints, models, dataset subsets, maps, samplers.

Objects shared across sessions are keyed by content digests (SHA-256 of checkpoint bytes,
of the mapped images) and bounded in bytes and age: the big ones (models, image subsets, maps,
what is measured on a map) by ``shared``, in budgets a host sets (EXPLORER_*_MEMORY_MB, see
explorer.settings); a Streamlit cache only where its entry count bounds its bytes, which a
comment there says why.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from explorer import kept, runtime, settings, store
from explorer.checkpoint import checkpoint_bytes, load_checkpoint, read_metadata
from explorer.data import DEFAULT_LIMITS, Dataset, dataset_names, host, load_dataset, load_user_dataset
from explorer.errors import DatasetError
from explorer.maps.pipeline import (
    CHECKPOINT_DIR,
    SHIPPED_BUNDLES,
    MapData,
    cached_map,
    compute_map,
    map_key,
    subset_for,
)
from explorer.maps.projection import ProjectionParams
from explorer.store import DiskCache, MemoryCache, cache_dir, data_digest, memoized, sha256
from explorer.untrusted import check_size, max_upload_bytes

DEFAULT_CHECKPOINT = settings.Settings().default_checkpoint  # a host may choose another: EXPLORER_DEFAULT_CHECKPOINT
TTL_S = settings.current().cache_ttl_s  # EXPLORER_CACHE_TTL_HOURS: every cache of the app forgets what goes unused
MAX_UPLOADS = 5  # per session, for models and for datasets
FALLBACK_DATASET = "fashion-mnist"  # what a checkpoint opens on when it names no built-in dataset


def dataset_of(meta: dict) -> str | None:
    """The built-in dataset a checkpoint's metadata names as its training data (for an import: the one its errors
    pointed to), or None when it names none we have. Pages open on it, an upload's preview is drawn from it."""
    named = meta.get("dataset")
    name = named.get("name") if isinstance(named, dict) else None
    return name if name in dataset_names() else None


def shared(budget: str, spinner: str | None = None):
    """Like ``st.cache_resource`` (one result per argument values for every session; ``_``-prefixed arguments
    are not part of the key), but bounded in bytes: the result goes to the process's cache for ``budget``
    (``store.budget``: "models", "images", "results"), which every function kept under that name shares."""

    def cache_for() -> MemoryCache:
        return store.budget(budget)

    @contextmanager
    def computing() -> Iterator[None]:
        # what a computation freed goes back to the system, not into the heap's free lists for good
        with runtime.trimmed_after():
            if spinner:
                with st.spinner(spinner):
                    yield
            else:
                yield

    return memoized(cache_for, around=computing)


@dataclass
class CheckpointRef:
    name: str
    path: Path | None  # a shipped file, or None for an upload held in this session only
    digest: str  # SHA-256 of the checkpoint bytes: the key of every cache
    meta: dict
    data: bytes | None = field(default=None, repr=False)

    @property
    def uploaded(self) -> bool:
        return self.data is not None

    @property
    def kind(self) -> str:
        return self.meta["config"]["kind"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["config"]["input_shape"])

    @property
    def latent_dim(self) -> int:
        return int(self.meta["config"]["latent_dim"])

    @property
    def trained_on(self) -> str | None:
        """The built-in dataset the checkpoint names as its own (``dataset_of``), or None."""
        return dataset_of(self.meta)

    def describe(self) -> str:
        """ "VAE · conv · latent 16" — what it is, in the words the sidebar and the pages use."""
        cfg = self.meta["config"]
        notes = cfg.get("notes") or {}
        kind = self.kind.upper()
        if "variational" in cfg:  # a graph pair run as exported (ONNX): its family, then where it came from
            kind = ("VAE" if cfg["variational"] else "AE") + f" ({kind})"
        arch = notes.get("architecture") or {"layerstack": "layers"}.get(cfg.get("backbone"), cfg.get("backbone", "?"))
        if notes.get("imported_from") == "keras":
            kind += " (Keras)"
        return f"{kind} · {arch} · latent {self.latent_dim}"


@dataclass
class Context:
    """What the sidebar chose, and the map it leads to."""

    ckpt: CheckpointRef
    dataset: Dataset
    data_key: str
    params: ProjectionParams
    map: MapData
    color_by: str
    color_dim: int = 0

    @property
    def key(self) -> str:
        return map_key(self.ckpt.digest, self.data_key, self.params)


def label(ctx: Context, i: int) -> str:
    """Mapped image i's class name, as every page writes it after its index; "?" for a label with no name."""
    lab, names = int(ctx.map.labels[i]), ctx.map.class_names
    return names[lab] if 0 <= lab < len(names) else "?"


def checkpoint_names() -> list[str]:
    """What the checkpoint boxes offer: shipped checkpoints (the default first), then this session's uploads."""
    return [p.stem for p in shipped_checkpoints()] + list(uploads())


def find_checkpoint(name: str | None) -> CheckpointRef | None:
    """A checkpoint by the name the boxes show (an upload of this session, or a shipped file); None if unknown.
    Every name a page holds (the sidebar's choice, a link's ``ckpt=``, an upload's label) is resolved here."""
    if name is None:
        return None
    if name in uploads():
        return uploads()[name]
    path = next((p for p in shipped_checkpoints() if p.stem == name), None)
    return None if path is None else checkpoint_ref(path)


def checkpoint(name: str) -> CheckpointRef:
    """``find_checkpoint`` for a name known to be offered (a box's value); an unknown one raises KeyError."""
    if (ref := find_checkpoint(name)) is None:
        raise KeyError(name)
    return ref


def checkpoints(*, shipped_only: bool = False) -> dict[str, CheckpointRef]:
    """Every checkpoint the boxes offer, by name and in their order (``checkpoint_names``)."""
    refs = {p.stem: checkpoint_ref(p) for p in shipped_checkpoints()}
    return refs if shipped_only else refs | uploads()


def checkpoint_by_digest(digest: str) -> CheckpointRef | None:
    """The checkpoint a ``model=`` link names by its SHA-256: this session's upload, else one the host keeps (it
    becomes an upload of this session); None when neither has it."""
    digest = digest.strip().lower()
    if (ref := next((r for r in uploads().values() if r.digest == digest), None)) is not None:
        return ref
    return kept_upload(digest) if re.fullmatch(r"[0-9a-f]{64}", digest) else None


def home_dataset(ckpt: CheckpointRef) -> str:
    """The built-in dataset a checkpoint opens on: its own, or Fashion-MNIST when it names none we have."""
    return ckpt.trained_on or FALLBACK_DATASET


def shipped_checkpoints() -> list[Path]:
    paths = sorted(CHECKPOINT_DIR.glob("*.safetensors"))
    default = settings.current().default_checkpoint
    paths.sort(key=lambda p: p.stem != default)  # the default first, the rest by name
    return paths


# Entry count bounds bytes: an entry is a shipped checkpoint's JSON metadata and digest (a few kilobytes; the
# bytes of the file are not kept), keyed by path and modification time.
@st.cache_resource(max_entries=64, ttl=TTL_S, show_spinner=False)
def _checkpoint_ref(path: str, mtime: float) -> CheckpointRef:
    data = Path(path).read_bytes()
    return CheckpointRef(Path(path).stem, Path(path), sha256(data), read_metadata(data))


def checkpoint_ref(path: Path) -> CheckpointRef:
    return _checkpoint_ref(str(path), path.stat().st_mtime)


@shared("models", spinner="Loading the model…")
def _model(digest: str, _source: str | bytes):
    import torch

    # One intra-op thread per process: every request here is small (tens of images), and
    # measured on 2 cores, two threads were 2-6x slower and erratic as soon as anything else
    # ran (another session, a map being fitted), while one thread stayed at ~30 ms per 64 decodes.
    torch.set_num_threads(1)
    return load_checkpoint(_source)


def model(ckpt: CheckpointRef):
    return _model(ckpt.digest, ckpt.data if ckpt.data is not None else str(ckpt.path))


# --- uploads: kept in st.session_state, so only the uploading browser session sees them -------------


def uploads() -> dict[str, CheckpointRef]:
    return st.session_state.setdefault("uploaded_checkpoints", {})


def uploaded_datasets() -> dict[str, tuple[Dataset, str]]:
    return st.session_state.setdefault("uploaded_datasets", {})


@dataclass
class PendingImport:
    """An import checked and worked out, shown for review before the user commits it."""

    name: str
    token: str  # names the uploads and the options: a new file or a new choice makes a new import
    data: bytes  # the checkpoint it becomes (ours as uploaded; a foreign file converted)
    lines: list[str]  # what was read and decided, one line each
    preview: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # originals, reconstructions (uint8), MSE each
    preview_note: str  # which images the preview shows, or why there is none


def prepare_import(files: list[tuple[str, bytes]], options: dict, token: str = "") -> PendingImport:
    """Check and convert uploaded model file(s), and reconstruct a few sample images with the result.

    ``options`` are ImportOptions keywords (left out: from the file or inferred). Raises CheckpointError
    (an OptionError naming the option at fault); nothing is unpickled (see explorer.importers)."""
    from explorer.importers import ImportOptions, describe, detect_format, import_files
    from explorer.importers.infer import reconstruction_preview, sample_dataset
    from explorer.maps.ops import to_uint8

    for fname, blob in files:  # the host's cap (EXPLORER_MAX_UPLOAD_MB), whatever the uploader let through
        check_size(len(blob), label=fname, limit=max_upload_bytes())
    name = " + ".join(n for n, _ in files)
    opts = ImportOptions(**options)
    if len(files) == 1 and detect_format(*files[0]) == "explorer":
        data = files[0][1]
        model = _model(sha256(data), data)  # validates the weights now, so a bad file is refused at upload
        lines = describe(model)
    else:
        model, report = import_files(files, opts)
        # the dataset its errors pointed to (or the one the person chose): the sidebar opens on it
        found = next((d.value for d in report.decisions if d.name == "dataset"), None)
        data = checkpoint_bytes(
            model,
            dataset={"name": opts.dataset or found or "unknown"},
            training={"device": "imported", "source": f"{report.source}: {name}"},
            metrics={},
        )
        lines = describe(model)
    try:
        title, sample = sample_dataset(opts.dataset or dataset_of(read_metadata(data)), tuple(model.input_shape))
        originals, recon, errors = reconstruction_preview(model, sample, n=8)
        preview = (to_uint8(originals), to_uint8(recon), errors)
        note = title
    except DatasetError as exc:
        preview, note = None, f"No preview: {exc}"
    return PendingImport(f"⬆ {name}", token, data, lines, preview, note)


def commit_import(pending: PendingImport) -> CheckpointRef:
    """Make a reviewed import one of this session's checkpoints."""
    ref = CheckpointRef(pending.name, None, sha256(pending.data), read_metadata(pending.data), pending.data)
    if (store := kept.from_settings(settings.current())) is not None:
        store.put(pending.data)  # a host's kept uploads: a link naming this digest then works for anyone
    held = uploads()
    held.pop(ref.name, None)
    held[ref.name] = ref
    while len(held) > MAX_UPLOADS:  # bound what one session can pin in memory
        held.pop(next(iter(held)))
    return ref


def add_upload(files: list[tuple[str, bytes]], options: dict) -> CheckpointRef:
    """Import and commit in one step (no review): ``prepare_import`` then ``commit_import``."""
    return commit_import(prepare_import(files, options))


def kept_upload(digest: str) -> CheckpointRef | None:
    """A model another session uploaded, kept on disk by the host (EXPLORER_KEEP_UPLOADS), now one of
    this session's checkpoints; None when uploads are not kept, or this one is unknown or expired."""
    store = kept.from_settings(settings.current())
    data = store.get(digest) if store is not None else None
    if data is None:
        return None
    meta = read_metadata(data)
    source = meta.get("training", {}).get("source", "")
    label = f"⬆ {source.split(': ', 1)[-1] or digest[:12]}"
    return commit_import(PendingImport(label, "", data, [], None, ""))


def add_dataset(name: str, data: bytes, input_shape: tuple[int, int, int]) -> str:
    limits = dataclasses.replace(DEFAULT_LIMITS, max_file_bytes=max_upload_bytes())
    ds = load_user_dataset(data, filename=name, input_shape=input_shape, limits=limits)
    label = f"⬆ {name}"
    held = uploaded_datasets()
    held.pop(label, None)
    held[label] = (ds, data_digest(ds.images, ds.labels))
    while len(held) > MAX_UPLOADS:
        held.pop(next(iter(held)))
    return label


def dataset_size(name: str, split: str) -> int:
    """How many images a dataset (and, for a built-in one, its split) holds."""
    if name in uploaded_datasets():
        return len(uploaded_datasets()[name][0])
    if name in host.configured_names():  # the host's own sources have one split
        return len(host.configured_source(name))
    return len(load_dataset(name, split))


@shared("images", spinner="Loading images…")
def _builtin_subset(name: str, split: str, n: int, input_shape: tuple[int, int, int]) -> tuple[Dataset, str]:
    return _subset(load_dataset(name, split), n, input_shape)


def _subset(ds: Dataset, n: int, input_shape: tuple[int, int, int]) -> tuple[Dataset, str]:
    ds = subset_for(ds, n, input_shape)
    return ds, data_digest(ds.images, ds.labels)


def dataset_subset(name: str, split: str, n: int, input_shape: tuple[int, int, int]) -> tuple[Dataset, str]:
    """The first n images of a seeded permutation (all of them for n = 0), fitted to the model's input."""
    if name in host.configured_names():  # read as fitted, cached by the source's files (explorer.data.host)
        got = host.configured_subset(name, n, input_shape)
        return got.dataset, got.digest
    if name in uploaded_datasets():
        # resizing and hashing an upload is not free: once per (dataset, size, shape) in this session
        memo = st.session_state.setdefault("uploaded_subsets", {})
        key = (uploaded_datasets()[name][1], n, tuple(input_shape))
        if key not in memo:
            memo.clear()  # keep one: bounded memory per session
            memo[key] = _subset(uploaded_datasets()[name][0], n, input_shape)
        return memo[key]
    return _builtin_subset(name, split, n, input_shape)


def _maps() -> MemoryCache:
    return store.budget("maps")


@st.cache_resource(show_spinner=False)  # one object per server: the files are bounded by EXPLORER_CACHE_MAX_MB
def disk_cache() -> DiskCache:
    # what the repository ships (the shipped sparse checkpoint's feature map) is read, never fitted on a server
    return DiskCache(cache_dir(), shipped=SHIPPED_BUNDLES)


def ready_map(ckpt: CheckpointRef, data_key: str, params: ProjectionParams) -> MapData | None:
    """The map from memory, the shipped bundles or the disk cache; None when it must be computed."""
    key = map_key(ckpt.digest, data_key, params)
    if (hit := _maps().get(key)) is not None:
        return hit
    md = cached_map(ckpt.digest, data_key, params, disk_cache())
    if md is not None:
        _maps().put(key, md)
    return md


def new_map(
    ckpt: CheckpointRef, ds: Dataset, params: ProjectionParams, progress, data_key: str | None = None
) -> MapData:
    """Encode and fit. ``progress(fraction, message)`` is called every second or so, which is also where
    Streamlit stops this run when the person changes something (Cancel included)."""
    import torch

    m = model(ckpt)
    # Encoding thousands of images is one big job: it gets every core while it runs (decodes of a few images
    # stay on one thread, see ``_model``); maps are computed one at a time, so this does not pile up.
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    try:
        data_key = data_key or data_digest(ds.images, ds.labels)
        md = compute_map(
            m,
            ckpt.digest,
            ds.images,
            ds.labels,
            ds.class_names,
            params,
            disk_cache(),
            progress=progress,
            data_key=data_key,
        )
    finally:
        torch.set_num_threads(1)
    _maps().put(map_key(ckpt.digest, data_key, params), md)
    return md


def map_data(ckpt: CheckpointRef, ds: Dataset, data_key: str, params: ProjectionParams) -> MapData:
    """``ready_map``, or computed under a progress bar (for pages that need a map and draw no other)."""
    if (md := ready_map(ckpt, data_key, params)) is not None:
        return md
    bar = st.progress(0.0, text=f"Mapping {len(ds):,} images with {params.label()}…")
    md = new_map(
        ckpt, ds, params, lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=f"{params.label()}: {m}"), data_key
    )
    bar.empty()
    return md


@shared("results", spinner="Fitting a Gaussian mixture to the encoded images…")
def aggregate_posterior(key: str, _model, _latents: np.ndarray):
    from explorer.maps.ops import AggregatePosterior

    return AggregatePosterior.for_model(_model, _latents)


@shared("results", spinner="Measuring each dimension's KL on the mapped images…")
def kl_per_dimension(key: str, _model, _images: np.ndarray) -> np.ndarray | None:
    """A variational model's mean KL per latent dimension over a map's images (``ops.kl_per_dimension``)."""
    from explorer.maps.ops import kl_per_dimension as measure

    return measure(_model, _images)


@dataclass(frozen=True, eq=False)
class Faithfulness:
    kept: np.ndarray  # (N,) share of each image's latent neighbours that are its map neighbours too
    trustworthiness: float
    continuity: float
    measured_on: int  # images the two numbers were computed on


@shared("results")
def faithfulness(key: str, metric: str, _latents: np.ndarray, _embedding: np.ndarray) -> Faithfulness:
    """How well a map keeps its images' latent neighbourhoods (``explorer.maps.faithfulness``), once per map."""
    from explorer.maps import faithfulness as f  # here: this function has the module's name

    metric = metric if metric in ("euclidean", "cosine") else "euclidean"
    kept = f.neighbours_kept(_latents, _embedding, metric=metric)
    trust, cont, used = f.trustworthiness_continuity(_latents, _embedding)
    return Faithfulness(kept, trust, cont, used)


def map_faithfulness(ctx: Context) -> Faithfulness:
    return faithfulness(ctx.key, ctx.params.metric, ctx.map.encoded.latents, ctx.map.projection.embedding)
