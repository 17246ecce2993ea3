"""The one disk store and the memory cache: bounded in bytes, least recently used first, atomic writes, digests
that name content, sizes counted honestly."""

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from explorer import store
from explorer.store import DiskCache, MemoryCache, atomic_write, data_digest, file_sha256, nbytes, sha256

KEY = [f"{i:064x}" for i in range(8)]


def _age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


# --- digests ----------------------------------------------------------------------------------------------


def test_digests_of_bytes_and_files_agree(tmp_path):
    data = os.urandom(3 * store.CHUNK + 17)  # more than one chunk, not a whole number of them
    (tmp_path / "f").write_bytes(data)
    assert sha256(data) == file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_data_digest_names_pixels_shape_dtype_and_labels():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10, 4, 4), dtype=np.uint8)
    labels = np.arange(10)
    d = data_digest(images, labels)
    assert d == data_digest(images.copy(), labels.astype(np.int32)), "labels count by value, not dtype"
    assert d == data_digest(np.asfortranarray(images), labels), "memory layout does not matter"
    assert d != data_digest(images.reshape(10, 2, 8), labels)
    assert d != data_digest(images.astype(np.int16), labels)
    assert d != data_digest(images, labels[::-1].copy())
    changed = images.copy()
    changed[3, 1, 1] ^= 1
    assert d != data_digest(changed, labels)


# --- atomic writes ----------------------------------------------------------------------------------------


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "x.npz"
    atomic_write(target, b"old")
    atomic_write(target, b"new contents", mode=0o600)
    assert target.read_bytes() == b"new contents"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "x.npz"
    atomic_write(target, b"old")

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"half")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_concurrent_writers_of_one_key_all_succeed(tmp_path):
    """Two sessions of one server may compute the same map at once: every put lands, one file remains."""
    from concurrent.futures import ThreadPoolExecutor

    cache = DiskCache(tmp_path, max_bytes=2**30)
    key = "ab" * 32
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: cache.put(key, bytes([i % 256]) * 100_000), range(64)))  # raises if any put failed
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.npz"], "no temporary file is left behind"
    assert len(cache.get(key)) == 100_000


# --- the disk store ---------------------------------------------------------------------------------------


def test_disk_store_evicts_least_recently_used_by_bytes(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=3500)
    for i in range(3):
        cache.put(KEY[i], bytes(1000 + i))
        _age(cache.path(KEY[i]), 100 - i)  # KEY[0] oldest
    assert cache.get(KEY[0]) is not None  # read: now the most recently used
    cache.put(KEY[3], bytes(1000))  # 4,003 bytes in a 3,500-byte store: one goes, the least recently used
    assert KEY[1] not in cache and KEY[0] in cache and KEY[2] in cache and KEY[3] in cache
    assert cache.total_bytes() <= 3500
    cache.put(KEY[4], bytes(3000))  # big: everything older goes until it fits
    assert [p.stem for p in tmp_path.glob("*.npz")] == [KEY[4]]


def test_disk_store_default_size_is_the_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE_MAX_MB", "17")
    assert DiskCache(tmp_path).max_bytes == 17 * 2**20


def test_keys_cannot_name_paths(tmp_path):
    cache = DiskCache(tmp_path)
    for bad in ("../escape", "a/b", "", "ä" * 4, ".hidden"):
        with pytest.raises(ValueError):
            cache.path(bad)


def test_eviction_tolerates_files_removed_by_another_process(tmp_path, monkeypatch):
    cache = DiskCache(tmp_path, max_bytes=2500)
    old = [cache.path(KEY[i]) for i in range(3)]
    for age, path in enumerate(reversed(old), start=1):
        path.write_bytes(bytes(1000))
        os.utime(path, (1e9 - age, 1e9 - age))  # old[0] is the oldest
    stat = Path.stat

    def racing_stat(self, *args, **kwargs):
        # another process's eviction removes old[0] after the listing, and old[1] after its stat
        if self == old[0]:
            self.unlink(missing_ok=True)
        result = stat(self, *args, **kwargs)
        if self == old[1]:
            self.unlink()
        return result

    monkeypatch.setattr(Path, "stat", racing_stat)
    cache.put("f" * 64, bytes(1000))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.glob("*.npz")) == sorted([old[2].name, f"{'f' * 64}.npz"])


def test_content_addressed_store_checks_what_it_reads(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=10_000, suffix=".upload", verify=True, private=True)
    digest = cache.add(b"weights")
    assert digest == sha256(b"weights") and cache.get(digest) == b"weights"
    assert cache.add(b"weights") == digest and len(list(tmp_path.iterdir())) == 1
    assert cache.path(digest).stat().st_mode & 0o077 == 0 and tmp_path.stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError):
        cache.put("0" * 64, b"not these bytes")
    cache.path(digest).write_bytes(b"swapped")
    assert cache.get(digest) is None and digest not in cache, "a damaged file is deleted, never served"


def test_age_limit_and_stale_temporary_files(tmp_path):
    cache = DiskCache(tmp_path, max_bytes=10_000, max_age_s=60)
    cache.put(KEY[0], b"old")
    cache.put(KEY[1], b"new")
    _age(cache.path(KEY[0]), 120)
    stale, fresh = tmp_path / ".x.npz.1.ab.tmp", tmp_path / ".y.npz.1.cd.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    _age(stale, store.STALE_TMP_S + 10)
    assert cache.prune() == 1
    assert KEY[0] not in cache and cache.get(KEY[1]) == b"new"
    assert not stale.exists() and fresh.exists(), "a writer still at work keeps its temporary file"
    _age(cache.path(KEY[1]), 120)
    assert cache.get(KEY[1]) is None, "past the age limit it is gone even before a prune"


def test_shipped_files_are_read_when_the_store_has_none(tmp_path):
    shipped = tmp_path / "bundles"
    shipped.mkdir()
    (shipped / f"{KEY[0]}.npz").write_bytes(b"shipped")
    cache = DiskCache(tmp_path / "cache", max_bytes=100, shipped=shipped)
    assert cache.get(KEY[0]) == b"shipped" and cache.get(KEY[1]) is None
    cache.put(KEY[0], b"computed here")
    assert cache.get(KEY[0]) == b"computed here", "the store's own file comes first"
    assert (shipped / f"{KEY[0]}.npz").read_bytes() == b"shipped", "the shipped folder is never written"


def test_a_missing_or_read_only_folder(tmp_path):
    cache = DiskCache(tmp_path / "nowhere", max_bytes=100)
    assert cache.get(KEY[0]) is None and cache.prune() == 0 and cache.total_bytes() == 0


# --- sizes and the memory cache ---------------------------------------------------------------------------


@dataclass
class _Held:
    a: np.ndarray
    names: list


def test_nbytes_counts_buffers_containers_and_shared_objects_once():
    big = np.zeros(1_000_000, dtype=np.float32)  # 4 MB
    assert 4_000_000 <= nbytes(big) < 4_001_000
    assert nbytes(big[:10]) >= 4_000_000, "a view keeps its whole base alive"
    assert nbytes((big, big[::2], [big])) < 4_002_000, "one buffer reached three ways counts once"
    assert nbytes(b"x" * 10_000) >= 10_000
    nested = (np.ones((100, 100)), {"k": np.ones(1000, dtype=np.uint8)}, "text")
    assert 81_000 <= nbytes(nested) < 90_000
    held = _Held(np.ones(50_000, dtype=np.int64), ["a", "b"])
    assert 400_000 <= nbytes(held) < 401_000

    class Plain:
        def __init__(self):
            self.arr = np.ones(25_000, dtype=np.float64)

    assert nbytes(Plain()) >= 200_000
    frombytes = np.frombuffer(b"\0" * 80_000, dtype=np.uint8)
    assert nbytes(frombytes) >= 80_000, "an array over bytes holds them"


def test_nbytes_of_a_torch_module_is_its_parameters():
    torch = pytest.importorskip("torch")
    net = torch.nn.Linear(1000, 100)  # 100,100 float32 numbers
    assert 400_400 <= nbytes(net) < 420_000
    assert 4_000 <= nbytes(torch.zeros(1000)) < 5_000


def test_memory_cache_is_bounded_in_bytes_least_recently_used_first():
    cache = MemoryCache(max_bytes=3 * 1_000_000 + 10_000, ttl_s=60)
    arrays = {k: np.zeros(1_000_000, dtype=np.uint8) for k in "abcd"}
    for k in "abc":
        cache.put(k, arrays[k])
    assert cache.get("a") is arrays["a"]  # now the most recently used
    cache.put("d", arrays["d"])
    assert cache.keys() == ["c", "a", "d"] and cache.get("b") is None
    assert cache.bytes <= cache.max_bytes
    cache.put("huge", np.zeros(5_000_000, dtype=np.uint8))  # larger than the whole budget: not kept
    assert "huge" not in cache and "d" in cache
    cache.put("d", np.zeros(10, dtype=np.uint8))  # replacing an entry counts its new size
    assert 2_000_000 < cache.bytes < 2_100_000  # "c" and "a" and a tiny "d"
    cache.discard("d")
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0


def test_memory_cache_entries_expire(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(store.time, "monotonic", lambda: now[0])
    cache = MemoryCache(max_bytes=10**6, ttl_s=10)
    cache.put("a", 1)
    now[0] = 5.0
    cache.put("b", 2)
    now[0] = 11.0
    assert cache.get("a") is None and cache.get("b") == 2
    cache.put("c", 3)
    now[0] = 16.0
    cache.put("d", 4)  # a put drops what expired meanwhile, read or not
    assert cache.keys() == ["c", "d"]
    with pytest.raises(ValueError):
        MemoryCache(max_bytes=10, ttl_s=0)


def test_a_budget_bounds_everything_kept_under_its_name_together(monkeypatch):
    monkeypatch.setenv("EXPLORER_RESULTS_MEMORY_MB", "3")
    cache = store.budget("results")
    assert store.budget("results") is cache and store.budget("images") is not cache
    assert cache.max_bytes == 3 * 2**20
    calls = []

    def results() -> MemoryCache:
        return store.budget("results")

    @store.memoized(results)
    def grid(i):
        calls.append(("grid", i))
        return np.zeros(1_000_000, dtype=np.uint8)

    @store.memoized(results)
    def curve(i):
        calls.append(("curve", i))
        return np.zeros(1_000_000, dtype=np.uint8)

    assert grid(0) is grid(0) and len(calls) == 1  # kept: the second call computes nothing
    curve(0)  # the same arguments, another function: its own entry
    assert len(calls) == 2 and len(cache) == 2
    for i in range(1, 4):
        grid(i), curve(i)
    assert len(cache) == 3 and cache.bytes <= cache.max_bytes  # two functions, one bound: not 3 MB each
    monkeypatch.setenv("EXPLORER_RESULTS_MEMORY_MB", "4")
    assert store.budget("results") is not cache and len(store.budget("results")) == 0  # a new bound, a new cache
