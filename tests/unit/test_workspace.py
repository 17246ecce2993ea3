"""Maps are cached on disk by content digest: a second session (a new cache object, a new process)
gets the same map without recomputing; a different checkpoint or dataset never collides."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from explorer import models
from explorer.checkpoint import checkpoint_bytes, load_checkpoint
from explorer.maps.pipeline import DiskCache, MemoryCache, cached_map, compute_map, data_digest, map_key, sha256
from explorer.maps.projection import ProjectionParams


@pytest.fixture
def setup(tmp_path):
    model = models.build(models.config_class("ae")(hidden=(32,), latent_dim=4))
    raw = checkpoint_bytes(model)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(300, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 3, size=300)
    return load_checkpoint(raw), sha256(raw), images, labels, tmp_path


def test_second_session_hits_the_disk_cache(setup):
    model, digest, images, labels, tmp = setup
    params = ProjectionParams(n_neighbors=10)
    first = compute_map(model, digest, images, labels, ["a", "b", "c"], params, DiskCache(tmp / "cache"))
    assert first.source == "computed"
    again = cached_map(digest, data_digest(images, labels), params, DiskCache(tmp / "cache"))  # a new "session"
    assert again is not None and again.source == "cache"
    assert np.array_equal(again.projection.embedding, first.projection.embedding)
    assert np.array_equal(again.encoded.recon_error, first.encoded.recon_error)
    assert again.class_names == ["a", "b", "c"]


def test_keys_depend_on_content_params_and_checkpoint(setup):
    model, digest, images, labels, tmp = setup
    cache = DiskCache(tmp / "cache")
    params = ProjectionParams(method="pca")
    compute_map(model, digest, images, labels, [], params, cache)
    key = data_digest(images, labels)
    assert cached_map(digest, key, params, cache) is not None
    assert cached_map(digest, key, ProjectionParams(method="pca", n_components=3), cache) is None
    assert cached_map("0" * 64, key, params, cache) is None
    other = images.copy()
    other[0, 0, 0] ^= 1
    assert cached_map(digest, data_digest(other, labels), params, cache) is None


def test_disk_cache_is_bounded_and_tolerates_damage(tmp_path, caplog):
    cache = DiskCache(tmp_path, max_bytes=3000)
    for i in range(5):
        cache.put(f"{i:064x}", bytes(1000))
    assert len(list(tmp_path.glob("*.npz"))) <= 3
    params = ProjectionParams()
    damaged = cache.path(map_key("b" * 64, "c" * 64, params))
    cache.put(damaged.stem, b"not an npz")
    with caplog.at_level(logging.WARNING, logger="explorer.maps.pipeline"):
        assert cached_map("b" * 64, "c" * 64, params, cache) is None
    assert str(damaged) in caplog.text, "a swallowed error is logged"
    with pytest.raises(ValueError):
        cache.path("../escape")


def test_eviction_tolerates_files_removed_by_another_process(tmp_path, monkeypatch):
    cache = DiskCache(tmp_path, max_bytes=2500)
    old = [cache.path(f"{i:064x}") for i in range(3)]
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


def test_memory_cache_bounds_entries_and_age(monkeypatch):
    import explorer.maps.pipeline as ws

    now = [0.0]
    monkeypatch.setattr(ws.time, "monotonic", lambda: now[0])
    cache = MemoryCache(max_entries=2, ttl_s=10)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") is None and cache.get("c") == 3 and len(cache) == 2
    now[0] = 11.0
    assert cache.get("c") is None


def test_concurrent_writers_of_one_key_all_succeed(tmp_path):
    """Two sessions of one server may compute the same map at once: every put lands, one file remains."""
    from concurrent.futures import ThreadPoolExecutor

    cache = DiskCache(tmp_path, max_bytes=2**30)
    key = "ab" * 32
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: cache.put(key, bytes([i % 256]) * 100_000), range(64)))  # raises if any put failed
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.npz"], "no temporary file is left behind"
    assert len(cache.get(key)) == 100_000


def test_maps_are_computed_in_turn_and_a_waiter_takes_the_finished_map(setup):
    """Concurrent map computations queue (EXPLORER_MAX_CONCURRENT_MAPS, default 1): a waiting session says so
    through its progress, and when the map it waited for is the one just computed, it reads it instead."""
    import threading
    import time

    from explorer.maps import pipeline as workspace

    model, digest, images, labels, tmp = setup
    params = ProjectionParams(method="pca")
    cache = DiskCache(tmp / "cache")
    assert compute_map(model, digest, images, labels, [], params, cache).source == "computed"
    messages: list[str] = []
    result: list = []
    slots = workspace._map_slots()
    slots.acquire()  # another session's map is being computed
    try:
        waiter = threading.Thread(
            target=lambda: result.append(
                compute_map(model, digest, images, labels, [], params, cache, progress=lambda f, m: messages.append(m))
            )
        )
        waiter.start()
        deadline = time.monotonic() + 30
        while not messages and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        slots.release()
    waiter.join(30)
    assert messages and messages[0].startswith("waiting 1 s for other maps"), messages
    assert result and result[0].source == "cache"
    # with nobody else computing, a call computes (python -m explorer project regenerates what it is asked to)
    assert compute_map(model, digest, images, labels, [], params, cache).source == "computed"


def test_freeze_long_lived_only_after_new_imports(monkeypatch):
    import gc
    import sys
    import types

    from explorer.maps import pipeline as workspace

    workspace.freeze_long_lived(min_new_modules=0)
    assert not workspace.freeze_long_lived(min_new_modules=3)  # nothing imported since
    for k in range(3):
        monkeypatch.setitem(sys.modules, f"_freeze_probe_{k}", types.ModuleType(f"_freeze_probe_{k}"))
    gc.unfreeze()
    assert workspace.freeze_long_lived(min_new_modules=3)
    assert gc.get_freeze_count() > 0
    gc.unfreeze()  # leave the test process as it was


def test_tune_allocator_on_glibc():
    import platform

    from explorer.maps.pipeline import tune_allocator

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert tune_allocator() is True
