"""Checkpoint + dataset + parameters -> everything a map view shows, cached on disk by content digest.

The cache key is the SHA-256 of the checkpoint bytes, the SHA-256 of the mapped images
and labels, and the projection parameters (with format versions), so a second session,
or a second user of a hosted app, gets the same map instantly, and an uploaded file
never collides with another of the same name. Shipped checkpoints have their maps
precomputed in ``checkpoints/bundles`` (``python -m explorer project``); the cold start
of the default view reads one of those and needs neither torch nor a fit.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from explorer.maps.encode import LATENTS_VERSION, Encoded
from explorer.maps.projection import PROJECTION_VERSION, Progress, Projection, ProjectionParams, no_progress
from explorer.settings import current as current_settings

if TYPE_CHECKING:
    from explorer.data import Dataset

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
CHECKPOINT_DIR = REPO / "checkpoints"
SHIPPED_BUNDLES = CHECKPOINT_DIR / "bundles"


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def data_digest(images: np.ndarray, labels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([list(images.shape), str(images.dtype)]).encode())
    h.update(np.ascontiguousarray(images).data)
    h.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    return h.hexdigest()


def subset_for(ds: Dataset, n: int, input_shape: tuple[int, int, int]) -> Dataset:
    """The first n images of a seeded permutation (all of them for n = 0), fitted to a model's input shape."""
    from explorer.data import fit_to_shape

    if n and n < len(ds):
        ds = ds.subset(n, seed=0)
    if ds.shape != tuple(input_shape):
        ds = fit_to_shape(ds, input_shape)
    return ds


def cache_dir() -> Path:
    """EXPLORER_CACHE_DIR, read and checked by explorer.settings."""
    return current_settings().cache_dir


def atomic_write(target: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``target`` so a reader sees the whole file or none. The temporary name is unique per
    writer, not per process: two sessions (threads of one server) writing the same map once shared one, and
    the second rename found it gone (seen by benchmarks/load.py)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


class DiskCache:
    """Files named by hex digest, written atomically; oldest evicted past ``max_bytes``."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        # default: EXPLORER_CACHE_MAX_MB (explorer.settings), read when the cache is made
        self.max_bytes = current_settings().cache_max_mb * 2**20 if max_bytes is None else max_bytes

    def path(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError("cache keys are hex digests")
        return self.root / f"{key}.npz"

    def get(self, key: str) -> bytes | None:
        p = self.path(key)
        try:
            data = p.read_bytes()
        except OSError:
            return None
        try:
            os.utime(p)  # recently used: evicted last
        except OSError:
            pass  # a read-only location (shipped bundles in an installed copy) is fine
        return data

    def put(self, key: str, data: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path(key), data)
        self._evict()

    def _evict(self) -> None:
        # other processes share the folder: any file may vanish between the listing, the stat and the unlink
        entries: list[tuple[float, int, Path]] = []  # (mtime, size, path)
        for p in self.root.glob("*.npz"):
            try:
                st = p.stat()
            except FileNotFoundError:
                continue
            entries.append((st.st_mtime, st.st_size, p))
        evict_to_fit(entries, self.max_bytes)


def evict_to_fit(entries: list[tuple[float, int, Path]], max_bytes: int) -> int:
    """Delete the oldest of ``entries`` ((last used, size, path) each) until the rest fit in ``max_bytes``;
    returns how many went. Files may vanish meanwhile (other processes share the folders)."""
    entries = sorted(entries, key=lambda e: e[0])
    total = sum(size for _, size, _ in entries)
    removed = 0
    for _, size, victim in entries:
        if total <= max_bytes:
            break
        victim.unlink(missing_ok=True)
        total -= size
        removed += 1
    return removed


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
) -> MapData:
    """Encode (or read cached latents) and fit the projection; stores the result in the cache.

    At most EXPLORER_MAX_CONCURRENT_MAPS maps are computed at once in a process; others wait their turn
    (``progress`` says so every second), then take the map from the cache if the one before computed it."""
    t0 = time.perf_counter()
    data_key = data_digest(images, labels)
    store = store_in or cache
    with _map_slot(progress) as waited, _trimmed_after():
        if waited and (raw := store.get(map_key(checkpoint_digest, data_key, params))) is not None:
            try:
                return _from_bundle(raw, "cache")  # another session computed this very map while we waited
            except Exception as exc:  # as in cached_map: recompute
                log.warning("ignoring unreadable cached map: %r", exc)
        return _compute_map(
            model, checkpoint_digest, data_key, images, labels, class_names, params, cache, progress, store, t0
        )


def trim_heap() -> None:
    """Hand memory freed by a big computation back to the system. glibc keeps freed memory in its arenas for
    reuse, so a server's resident size would otherwise stay at the peak of its largest map so far."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


M_MMAP_THRESHOLD = -3  # mallopt's parameter numbers (malloc.h)
M_ARENA_MAX = -8
MMAP_THRESHOLD = 1 << 20  # blocks this big or bigger come from the system and go back to it when freed


@functools.cache  # app.py runs on every rerun: once is enough
def tune_allocator() -> bool:
    """Make a long-running server give memory back. Once per process, before the big allocations start.

    glibc serves a large block from its heap instead of a fresh mapping once a block that size has been freed
    (the mapping threshold rises with every free, up to 32 MB). A server that encodes, fits and decodes for
    many people then keeps every freed batch, chunk and layout array in its heaps, where fragments pin it:
    measured with eight people at once, the same work peaked at 1,236 MB this way and at 779 to 991 MB with the
    threshold fixed (docs/BENCHMARKS.md has the later changes). A fixed threshold keeps blocks of 1 MB and more as their own mappings, returned on free;
    two arenas (as ``MALLOC_ARENA_MAX=2``) stop every script thread from growing a heap of its own.
    Returns False where the C library is not glibc (nothing is changed)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_ARENA_MAX, 2))
    except (OSError, AttributeError):
        return False


_FREEZE_LOCK = threading.Lock()
_frozen_modules = 0  # len(sys.modules) at the last freeze


def freeze_long_lived(min_new_modules: int = 20) -> bool:
    """Move what is alive now out of the cyclic garbage collector's sight, when modules were imported since the
    last time; returns True when it did.

    Streamlit runs a full collection after every script run, and a full collection walks every tracked object:
    with torch, Plotly and the app imported that is about 250,000 objects and 110 ms holding the interpreter
    lock, on every click of every person. Almost all of them are modules, classes and functions that live as
    long as the process. Frozen (``gc.freeze``), they are skipped: the same collection then takes well under a
    millisecond. Objects freed by reference counting are still freed; only cycles among frozen objects would
    stay, which is why a collection runs first."""
    import gc
    import sys

    global _frozen_modules
    if len(sys.modules) - _frozen_modules < min_new_modules:
        return False
    with _FREEZE_LOCK:
        gc.collect()
        gc.freeze()
        _frozen_modules = len(sys.modules)
    return True


@contextmanager
def _trimmed_after() -> Iterator[None]:
    try:
        yield
    finally:
        trim_heap()


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
    from explorer.maps.encode import encode_dataset
    from explorer.maps.projection import fit

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


# A map computation's peak memory is its k-NN and layout work: about 400 MB for 10,000 images on top of the
# server's own. Eight people mapping uploads at once took a 2-core server to 3.3 GB and made each wait 78 s
# (benchmarks/load.py): the cores are shared anyway, so maps queue instead of piling up.
_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


def _map_slots() -> threading.BoundedSemaphore:
    global _slots
    with _slots_lock:
        if _slots is None:  # sized once per process: a changed setting applies from the next start
            _slots = threading.BoundedSemaphore(current_settings().max_concurrent_maps)
        return _slots


@contextmanager
def _map_slot(progress: Progress) -> Iterator[bool]:
    """Holds one of the process's map slots; yields whether it had to wait for it."""
    slots = _map_slots()
    waited = not slots.acquire(blocking=False)
    seconds = 0
    while waited and not slots.acquire(timeout=1.0):
        seconds += 1
        # once a second: the caller's progress is also where Streamlit stops a run the person abandoned
        progress(0.0, f"waiting {seconds} s for other maps to finish (this server computes them in turn)")
    try:
        yield waited
    finally:
        slots.release()


class MemoryCache:
    """A small LRU with a time to live, for objects shared by every session of a hosted app.

    Keys are content digests, so two users never see each other's entries unless they
    hold the same bytes; ``max_entries`` and ``ttl_s`` bound the memory many users can pin.
    """

    def __init__(self, max_entries: int = 8, ttl_s: float = 3600.0) -> None:
        from collections import OrderedDict
        from threading import Lock

        self.max_entries, self.ttl_s = max_entries, ttl_s
        self._items: OrderedDict[str, tuple[float, object]] = OrderedDict()
        self._lock = Lock()

    def get(self, key: str):
        with self._lock:
            item = self._items.get(key)
            if item is None or time.monotonic() - item[0] > self.ttl_s:
                self._items.pop(key, None)
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: str, value: object) -> None:
        with self._lock:
            self._items[key] = (time.monotonic(), value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
