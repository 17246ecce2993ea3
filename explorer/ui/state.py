"""Everything the views share, cached: checkpoints, models, dataset subsets, maps, samplers.

Objects shared across sessions are keyed by content digests (SHA-256 of checkpoint bytes,
of the mapped images) and bounded in count and age.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import streamlit as st

from explorer.checkpoint import read_metadata
from explorer.data import Dataset, fit_to_shape, load_dataset
from explorer.projection import ProjectionParams
from explorer.workspace import (
    CHECKPOINT_DIR,
    DiskCache,
    MapData,
    MemoryCache,
    cache_dir,
    cached_map,
    compute_map,
    data_digest,
    map_key,
    sha256,
)

DEFAULT_CHECKPOINT = "fashion-mnist-vae-conv16"
TTL_S = 6 * 3600


@dataclass
class CheckpointRef:
    name: str
    path: Path
    digest: str
    meta: dict

    @property
    def kind(self) -> str:
        return self.meta["config"]["kind"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.meta["config"]["input_shape"])

    @property
    def latent_dim(self) -> int:
        return int(self.meta["config"]["latent_dim"])


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
    notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return map_key(self.ckpt.digest, self.data_key, self.params)


def shipped_checkpoints() -> list[Path]:
    paths = sorted(CHECKPOINT_DIR.glob("*.safetensors"))
    paths.sort(key=lambda p: p.stem != DEFAULT_CHECKPOINT)  # the default first, the rest by name
    return paths


@st.cache_resource(max_entries=64, ttl=TTL_S, show_spinner=False)
def _checkpoint_ref(path: str, mtime: float) -> CheckpointRef:
    data = Path(path).read_bytes()
    return CheckpointRef(Path(path).stem, Path(path), sha256(data), read_metadata(data))


def checkpoint_ref(path: Path) -> CheckpointRef:
    return _checkpoint_ref(str(path), path.stat().st_mtime)


@st.cache_resource(max_entries=8, ttl=TTL_S, show_spinner="Loading the model…")
def _model(digest: str, _path: str):
    from explorer.checkpoint import load_checkpoint

    return load_checkpoint(_path)


def model(ckpt: CheckpointRef):
    return _model(ckpt.digest, str(ckpt.path))


@st.cache_resource(max_entries=16, ttl=TTL_S, show_spinner="Loading images…")
def dataset_subset(name: str, split: str, n: int, input_shape: tuple[int, int, int]) -> tuple[Dataset, str]:
    """The first n images of a seeded permutation (all of them for n = 0), fitted to the model's input."""
    ds = load_dataset(name, split)
    if n and n < len(ds):
        ds = ds.subset(n, seed=0)
    if ds.shape != tuple(input_shape):
        ds = fit_to_shape(ds, input_shape)
    return ds, data_digest(ds.images, ds.labels)


@st.cache_resource(show_spinner=False)
def _maps() -> MemoryCache:
    return MemoryCache(max_entries=12, ttl_s=TTL_S)


@st.cache_resource(show_spinner=False)
def disk_cache() -> DiskCache:
    return DiskCache(cache_dir())


def map_data(ckpt: CheckpointRef, ds: Dataset, data_key: str, params: ProjectionParams) -> MapData:
    """From memory, the shipped bundles, the disk cache, or computed with a progress bar."""
    key = map_key(ckpt.digest, data_key, params)
    if (hit := _maps().get(key)) is not None:
        return hit
    md = cached_map(ckpt.digest, data_key, params, disk_cache())
    if md is None:
        bar = st.progress(0.0, text=f"Mapping {len(ds):,} images with {params.label()}…")

        def progress(f: float, message: str) -> None:
            bar.progress(min(max(f, 0.0), 1.0), text=f"{params.label()}: {message}")

        md = compute_map(
            model(ckpt), ckpt.digest, ds.images, ds.labels, ds.class_names, params, disk_cache(), progress=progress
        )
        bar.empty()
    _maps().put(key, md)
    return md


@st.cache_resource(max_entries=8, ttl=TTL_S, show_spinner="Fitting a Gaussian mixture to the encoded images…")
def aggregate_posterior(key: str, _model, _latents: np.ndarray):
    from explorer.ops import AggregatePosterior

    return AggregatePosterior.for_model(_model, _latents)
