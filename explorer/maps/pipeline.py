"""Checkpoint + dataset + parameters -> everything a map view shows, cached on disk by content digest.

The cache key is the SHA-256 of the checkpoint bytes, the SHA-256 of the mapped images
and labels, and the projection parameters (with format versions), so a second session,
or a second user of a hosted app, gets the same map instantly, and an uploaded file
never collides with another of the same name. Shipped checkpoints have their maps
precomputed in ``checkpoints/bundles`` (``python -m explorer project``); the cold start
of the default view reads one of those and needs neither torch nor a fit. The store, the
digests and the process's map slots are explorer.store's and explorer.runtime's.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.data import Dataset, fit_to_shape
from explorer.maps.encode import LATENTS_VERSION, Encoded, encode_dataset
from explorer.maps.projection import PROJECTION_VERSION, Progress, Projection, ProjectionParams, fit, no_progress
from explorer.runtime import map_slot, trimmed_after
from explorer.store import DiskCache, data_digest, sha256

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT_DIR = REPO / "checkpoints"
SHIPPED_BUNDLES = CHECKPOINT_DIR / "bundles"


def subset_for(ds: Dataset, n: int, input_shape: tuple[int, int, int]) -> Dataset:
    """The first n images of a seeded permutation (all of them for n = 0), fitted to a model's input shape."""
    if n and n < len(ds):
        ds = ds.subset(n, seed=0)
    if ds.shape != tuple(input_shape):
        ds = fit_to_shape(ds, input_shape)
    return ds


def latents_key(checkpoint_digest: str, data_key: str) -> str:
    return sha256(f"latents/{LATENTS_VERSION}/{checkpoint_digest}/{data_key}".encode())


def map_key(checkpoint_digest: str, data_key: str, params: ProjectionParams) -> str:
    return sha256(f"map/{PROJECTION_VERSION}/{checkpoint_digest}/{data_key}/{params.digest()}".encode())


@dataclass
class MapData:
    """What the map view draws: positions, labels and the fields it can colour by. numpy only."""

    projection: Projection
    encoded: Encoded
    labels: np.ndarray
    class_names: list[str]
    seconds: float = 0.0  # time spent computing (0 when read from a bundle or the cache)
    source: str = "computed"  # computed | cache | bundle


def _bundle_bytes(proj: Projection, enc: Encoded, labels: np.ndarray, class_names: list[str]) -> bytes:
    extra = {f"enc_{k}": v for k, v in enc.fields().items() if k != "latents"}
    extra["labels"] = labels.astype(np.int64)
    extra["class_names"] = np.array(class_names, dtype=str) if class_names else np.zeros(0, dtype="<U1")
    return proj.to_bytes(extra)


def _from_bundle(data: bytes, source: str) -> MapData:
    proj, extra = Projection.from_bytes(data)
    enc = Encoded.from_fields({"latents": proj.latents, **{k[4:]: v for k, v in extra.items() if k.startswith("enc_")}})
    return MapData(proj, enc, extra["labels"], [str(c) for c in extra["class_names"]], 0.0, source)


def cached_map(checkpoint_digest: str, data_key: str, params: ProjectionParams, cache: DiskCache) -> MapData | None:
    """The map from the shipped bundles or the disk cache, or None."""
    key = map_key(checkpoint_digest, data_key, params)
    for where, store in (("bundle", DiskCache(SHIPPED_BUNDLES)), ("cache", cache)):
        data = store.get(key) if store.root.is_dir() else None
        if data is not None:
            try:
                return _from_bundle(data, where)
            except Exception as exc:  # a damaged file is recomputed, never fatal; its errors come in many types
                log.warning("ignoring unreadable %s file %s: %r", where, store.path(key), exc)
    return None


def compute_map(
    model,
    checkpoint_digest: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    params: ProjectionParams,
    cache: DiskCache,
    *,
    progress: Progress = no_progress,
    store_in: DiskCache | None = None,
    data_key: str | None = None,
) -> MapData:
    """Encode (or read cached latents) and fit the projection; stores the result in the cache.

    ``data_key`` keys the latents and the map: the images' ``data_digest`` unless told (a map of latents read
    from elsewhere is keyed by those too; ``precomputed.seed_latents``).

    At most EXPLORER_MAX_CONCURRENT_MAPS maps are computed at once in a process; others wait their turn
    (``progress`` says so every second), then take the map from the cache if the one before computed it."""
    t0 = time.perf_counter()
    data_key = data_key or data_digest(images, labels)
    store = store_in or cache
    with map_slot(progress) as waited, trimmed_after():
        if waited and (raw := store.get(map_key(checkpoint_digest, data_key, params))) is not None:
            try:
                return _from_bundle(raw, "cache")  # another session computed this very map while we waited
            except Exception as exc:  # as in cached_map: recompute
                log.warning("ignoring unreadable cached map: %r", exc)
        return _compute_map(
            model, checkpoint_digest, data_key, images, labels, class_names, params, cache, progress, store, t0
        )


def _compute_map(
    model,
    checkpoint_digest: str,
    data_key: str,
    images: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    params: ProjectionParams,
    cache: DiskCache,
    progress: Progress,
    store: DiskCache,
    t0: float,
) -> MapData:
    lkey = latents_key(checkpoint_digest, data_key)
    enc = None
    if (raw := cache.get(lkey)) is not None:
        try:
            enc = Encoded.from_bytes(raw)
        except Exception as exc:  # as above: re-encode
            log.warning("ignoring unreadable cached latents %s: %r", cache.path(lkey), exc)
    if enc is None:
        enc = encode_dataset(model, images, progress=lambda f, m: progress(0.2 * f, m))
        cache.put(lkey, enc.to_bytes())
    proj = fit(enc.latents, params, progress=lambda f, m: progress(0.2 + 0.8 * f, m))
    result = MapData(proj, enc, labels, class_names, time.perf_counter() - t0, "computed")
    store.put(map_key(checkpoint_digest, data_key, params), _bundle_bytes(proj, enc, labels, class_names))
    return result
