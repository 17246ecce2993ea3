"""Digests, atomic writes, and the two places results are kept: files on disk and objects in memory, each bounded
in bytes and giving up the least recently used first.

One disk store serves every file the explorer keeps: maps and latents (named by a digest of what made them),
quality reports, and a host's kept uploads (named by the digest of their own bytes, checked on every read).
Several server processes may share its folder: a write goes to a temporary file of its own and is renamed into
place, so a reader sees a whole file or none, and every listing tolerates files vanishing under it.

The memory cache holds objects shared by every session of a server (models, maps, image subsets); it counts
what each entry holds, not how many entries there are, because one map of 70,000 images weighs as much as a
hundred small ones.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import logging
import os
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from explorer.settings import current as current_settings

log = logging.getLogger(__name__)

STALE_TMP_S = 3600.0  # a temporary file this old belongs to a writer that died
CHUNK = 1 << 20


# --- digests ----------------------------------------------------------------------------------------------


def sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read a megabyte at a time (a checkpoint need not fit in memory twice)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def data_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """Names a set of images and their labels: the same pixels, shape, dtype and labels give the same digest."""
    h = hashlib.sha256()
    h.update(json.dumps([list(images.shape), str(images.dtype)]).encode())
    h.update(np.ascontiguousarray(images).data)
    h.update(np.ascontiguousarray(labels, dtype=np.int64).data)
    return h.hexdigest()


# --- files ------------------------------------------------------------------------------------------------


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


def _touch(path: Path) -> None:
    """Mark as just used: a file's modification time is the clock of eviction and of the age limit."""
    try:
        os.utime(path)
    except OSError:
        pass  # vanished, or a read-only location (shipped bundles in an installed copy): it keeps its old time


# What a DiskCache file begins with when its key names inputs, not content: this tag and the SHA-256 of the bytes
# after it. A file whose bytes no longer match (a flipped bit, a disk fault, someone's edit) is deleted on reading
# and computed again. Files without the tag (shipped bundles, files of earlier versions) are read as they are:
# what reads them refuses a damaged one in turn.
FRAME = b"LXC1"


_WRITE_PROBLEMS: dict[str, str] = {}  # folder -> why its last write failed (gone once a write there succeeds)


def _write_failed(root: Path, exc: OSError) -> None:
    why = exc.strerror or str(exc)
    if _WRITE_PROBLEMS.get(str(root)) != why:  # logged once per folder and cause, not on every map
        log.warning("cannot write to %s (%s): results are kept in memory only until it can", root, why)
    _WRITE_PROBLEMS[str(root)] = why


def write_problems() -> dict[str, str]:
    """The stores' folders whose last write failed, and why ("No space left on device"): the app says so."""
    return dict(_WRITE_PROBLEMS)


class DiskCache:
    """Files named by a hex key in one folder, written atomically; the least recently used go past ``max_bytes``.

    ``max_age_s``: files unused for longer are gone (None: no age limit). ``private``: owner-only files and
    folder (other people's uploads). ``verify``: the key is the SHA-256 of the file's bytes, checked on every
    read; a file that no longer matches is deleted, never returned. ``add(data)`` stores bytes under their own
    digest. ``shipped``: a read-only folder of files that came with the explorer (checkpoints/bundles), read when
    the store has no such file, so what was computed once for a shipped checkpoint is never computed on a server.
    """

    def __init__(
        self,
        root: Path,
        max_bytes: int | None = None,
        *,
        suffix: str = ".npz",
        max_age_s: float | None = None,
        private: bool = False,
        verify: bool = False,
        shipped: Path | None = None,
    ) -> None:
        # default: EXPLORER_CACHE_MAX_MB (explorer.settings), read when the store is made
        max_bytes = current_settings().cache_max_mb * 2**20 if max_bytes is None else int(max_bytes)
        if max_bytes < 1 or (max_age_s is not None and max_age_s <= 0):
            raise ValueError("a disk store needs a positive size limit and, if any, a positive age limit")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.suffix = suffix
        self.private = private
        self.verify = verify
        self.shipped = None if shipped is None else Path(shipped)

    def path(self, key: str) -> Path:
        if not (isinstance(key, str) and key.isascii() and key.isalnum()):
            raise ValueError("store keys are hex digests")
        return self.root / f"{key}{self.suffix}"

    def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or None when absent, expired or (with ``verify``) damaged."""
        p = self.path(key)
        try:
            data = p.read_bytes()
        except OSError:
            if self.shipped is None:
                return None
            try:
                return (self.shipped / p.name).read_bytes()
            except OSError:
                return None
        if self.verify and sha256(data) != key:
            p.unlink(missing_ok=True)  # damaged or replaced on disk: never hand it out
            return None
        if data[: len(FRAME)] == FRAME:
            body = data[len(FRAME) + 32 :]
            if hashlib.sha256(body).digest() != data[len(FRAME) : len(FRAME) + 32]:
                log.warning("cache file %s is damaged (its checksum does not match): removed; it is computed again", p)
                p.unlink(missing_ok=True)
                return None
            data = body
        if self.max_age_s is not None and _age(p) > self.max_age_s:
            p.unlink(missing_ok=True)  # expired: as if pruned already
            return None
        _touch(p)  # recently used: evicted last
        return data

    def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if self.verify and sha256(data) != key:
            raise ValueError("this store names files by the SHA-256 of their bytes")
        if target.exists() and self.verify:
            _touch(target)  # the same bytes, kept already: now recently used
        else:
            # a store keyed by content is its own checksum; any other file carries one (see FRAME)
            framed = data if self.verify else FRAME + hashlib.sha256(data).digest() + data
            try:
                self.root.mkdir(mode=0o700 if self.private else 0o777, parents=True, exist_ok=True)
                atomic_write(target, framed, mode=0o600 if self.private else 0o644)
            except OSError as exc:  # a full disk, a read-only volume: what was computed is still served
                _write_failed(self.root, exc)
                return
            _WRITE_PROBLEMS.pop(str(self.root), None)
        self.prune()

    def add(self, data: bytes) -> str:
        """Store ``data`` under its own SHA-256 (once: the same bytes twice are one file); returns the digest."""
        digest = sha256(data)
        self.put(digest, data)
        return digest

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def prune(self, now: float | None = None) -> int:
        """Delete what is too old (and temporary files of writers that died), then the least recently used until
        the rest fits; returns how many stored files went."""
        now = time.time() if now is None else now
        removed = 0
        entries: list[tuple[float, int, Path]] = []  # (last used, size, path)
        for p in self._listing():
            try:
                st = p.stat()
            except FileNotFoundError:  # another process pruned it first
                continue
            if p.name.startswith("."):
                if now - st.st_mtime > STALE_TMP_S:
                    p.unlink(missing_ok=True)
                continue
            if self.max_age_s is not None and now - st.st_mtime > self.max_age_s:
                p.unlink(missing_ok=True)
                removed += 1
                continue
            entries.append((st.st_mtime, st.st_size, p))
        return removed + evict_to_fit(entries, self.max_bytes)

    def total_bytes(self) -> int:
        total = 0
        for p in self._listing():
            if not p.name.startswith("."):
                try:
                    total += p.stat().st_size
                except FileNotFoundError:
                    pass
        return total

    def _listing(self) -> list[Path]:
        try:
            return [p for p in self.root.iterdir() if p.name.endswith((self.suffix, ".tmp"))]
        except (FileNotFoundError, NotADirectoryError):
            return []


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


# --- memory -----------------------------------------------------------------------------------------------


def nbytes(obj: object) -> int:
    """About how many bytes ``obj`` keeps alive: array buffers in full, containers, dataclasses and plain objects
    with what they hold. Something reached twice (two views of one array, a shared list) counts once."""
    return _nbytes(obj, set())


def _nbytes(obj: Any, seen: set[int]) -> int:
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        root = obj
        while isinstance(root.base, np.ndarray):  # a view keeps its whole base alive
            root = root.base
        if root is not obj:
            return sys.getsizeof(obj) + _nbytes(root, seen)
        # numpy counts an array's own buffer in its size; a view of bytes or of a mapped file holds its buffer too
        return sys.getsizeof(obj) + (0 if obj.flags.owndata else obj.nbytes)
    if isinstance(obj, (bytes, bytearray, str, int, float, complex, bool)) or obj is None:
        return sys.getsizeof(obj)
    if isinstance(obj, memoryview):
        return sys.getsizeof(obj) + obj.nbytes
    if callable(getattr(obj, "element_size", None)) and callable(getattr(obj, "nelement", None)):
        return sys.getsizeof(obj) + int(obj.element_size()) * int(obj.nelement())  # a tensor, without torch here
    if callable(getattr(obj, "state_dict", None)) and callable(getattr(obj, "parameters", None)):
        # a torch module: its parameters and buffers, plus a little per tensor
        return sum(_nbytes(t, seen) for t in obj.state_dict(keep_vars=True).values()) + 4096
    if isinstance(obj, dict):
        return sys.getsizeof(obj) + sum(_nbytes(k, seen) + _nbytes(v, seen) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sys.getsizeof(obj) + sum(_nbytes(v, seen) for v in obj)
    size = sys.getsizeof(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return size + sum(_nbytes(getattr(obj, f.name, None), seen) for f in dataclasses.fields(obj))
    held = getattr(obj, "__dict__", None)
    if isinstance(held, dict):
        size += _nbytes(held, seen)
    for slot in getattr(type(obj), "__slots__", ()):
        size += _nbytes(getattr(obj, slot, None), seen)
    return size


class MemoryCache:
    """An LRU bounded in bytes with a time to live, for objects shared by every session of a server.

    Keys name content (digests, or arguments that name it), so two users share an entry only when they hold the
    same bytes; ``max_bytes`` bounds what many users together can pin, ``ttl_s`` how long an idle entry stays.
    An object larger than the whole budget is returned to its caller but not kept. ``sizeof`` says what an entry
    weighs (``nbytes`` unless told)."""

    def __init__(self, max_bytes: int, ttl_s: float, *, sizeof=nbytes) -> None:
        if max_bytes < 0 or ttl_s <= 0:
            raise ValueError("a memory cache needs a size limit of 0 or more and a positive time to live")
        self.max_bytes, self.ttl_s, self.sizeof = int(max_bytes), float(ttl_s), sizeof
        self._items: OrderedDict[Hashable, tuple[float, int, object]] = OrderedDict()  # key -> (stored, bytes, value)
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable):
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if time.monotonic() - item[0] > self.ttl_s:
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return item[2]

    def put(self, key: Hashable, value: object) -> None:
        size = self.sizeof(value)
        with self._lock:
            if key in self._items:
                self._drop(key)
            if size > self.max_bytes:
                return
            self._items[key] = (time.monotonic(), size, value)
            self._bytes += size
            now = time.monotonic()
            for old in [k for k, (t, _, _) in self._items.items() if now - t > self.ttl_s]:
                self._drop(old)
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def discard(self, key: Hashable) -> None:
        with self._lock:
            if key in self._items:
                self._drop(key)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._items)

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return self.get(key) is not None

    def _drop(self, key: Hashable) -> None:
        _, size, _ = self._items.pop(key)
        self._bytes -= size


_BUDGETS: dict[str, tuple[tuple[int, float], MemoryCache]] = {}
_BUDGETS_LOCK = threading.Lock()


def budget(name: str) -> MemoryCache:
    """The process's one memory cache for a budget in Settings (``memory_bytes``: "maps", "models", "images",
    "results"). Everything kept under that name shares it, whichever module keeps it, so the budget bounds all
    of it together. Changed settings (bytes or time to live) start a new, empty cache for the name."""
    settings = current_settings()
    size = (settings.memory_bytes(name), settings.cache_ttl_s)
    with _BUDGETS_LOCK:
        held = _BUDGETS.get(name)
        if held is None or held[0] != size:
            held = _BUDGETS[name] = (size, MemoryCache(*size))
        return held[1]


def clear_budgets() -> None:
    """Empty every budget's cache (what ``st.cache_resource.clear`` would leave behind)."""
    with _BUDGETS_LOCK:
        for _, cache in _BUDGETS.values():
            cache.clear()


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def memoized(
    cache_for: Callable[[], MemoryCache], *, around: Callable[[], AbstractContextManager] = nullcontext
) -> Callable[[_Fn], _Fn]:
    """Decorate a function so its results are kept in ``cache_for()``, keyed by the function's qualified name and
    the arguments whose names do not start with ``_`` (those are the content they stand for, as with Streamlit's
    caches): several functions may share one cache, and its byte bound then holds for them together.

    One caller computes a key at a time; others asking for it meanwhile wait and take its result, so two
    sessions opening the same checkpoint load one model. ``around()`` wraps a computation (a spinner)."""

    def wrap(fn: _Fn) -> _Fn:
        sig = inspect.signature(fn)
        named = [n for n in sig.parameters if not n.startswith("_")]
        name = fn.__qualname__
        locks: dict[Hashable, threading.Lock] = {}
        guard = threading.Lock()

        @functools.wraps(fn)
        def call(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            key = (name, *(bound.arguments[n] for n in named))
            cache = cache_for()
            if (hit := cache.get(key)) is not None:
                return hit[0]  # kept in a 1-tuple: a None result is a result too
            with guard:
                lock = locks.setdefault(key, threading.Lock())
            with lock:
                try:
                    if (hit := cache.get(key)) is not None:
                        return hit[0]
                    with around():
                        value = fn(*args, **kwargs)
                    cache.put(key, (value,))
                    return value
                finally:
                    with guard:
                        locks.pop(key, None)

        return call  # type: ignore[return-value]

    return wrap
