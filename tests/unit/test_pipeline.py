"""Maps are cached on disk by content digest: a second session (a new cache object, a new process)
gets the same map without recomputing; a different checkpoint or dataset never collides; maps are
computed in turn."""

import logging

import numpy as np
import pytest

from explorer import models, runtime
from explorer.checkpoint import checkpoint_bytes, load_checkpoint
from explorer.maps.pipeline import cached_map, compute_map, map_key
from explorer.maps.projection import ProjectionParams
from explorer.store import DiskCache, data_digest, sha256


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


def test_a_damaged_cached_map_is_logged_and_recomputed(tmp_path, caplog):
    cache = DiskCache(tmp_path, max_bytes=3000)
    params = ProjectionParams()
    damaged = cache.path(map_key("b" * 64, "c" * 64, params))
    cache.put(damaged.stem, b"not an npz")
    with caplog.at_level(logging.WARNING, logger="explorer.maps.pipeline"):
        assert cached_map("b" * 64, "c" * 64, params, cache) is None
    assert str(damaged) in caplog.text, "a swallowed error is logged"
    with pytest.raises(ValueError):
        cache.path("../escape")


def test_maps_are_computed_in_turn_and_a_waiter_takes_the_finished_map(setup):
    """Concurrent map computations queue (EXPLORER_MAX_CONCURRENT_MAPS, default 1): a waiting session says so
    through its progress, and when the map it waited for is the one just computed, it reads it instead."""
    import threading
    import time

    model, digest, images, labels, tmp = setup
    params = ProjectionParams(method="pca")
    cache = DiskCache(tmp / "cache")
    assert compute_map(model, digest, images, labels, [], params, cache).source == "computed"
    messages: list[str] = []
    result: list = []
    slots = runtime.map_slots()
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


def test_a_cached_map_with_a_flipped_byte_is_found_by_its_checksum_and_computed_again(setup, caplog):
    model, digest, images, labels, tmp = setup
    params = ProjectionParams(n_neighbors=10)
    cache = DiskCache(tmp / "cache")
    first = compute_map(model, digest, images, labels, [], params, cache)
    path = cache.path(map_key(digest, data_digest(images, labels), params))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10  # one bit, in the middle of the arrays, where no parser would notice
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="explorer.store"):
        assert cached_map(digest, data_digest(images, labels), params, cache) is None
    assert "is damaged (its checksum does not match)" in caplog.text and not path.exists()
    again = compute_map(model, digest, images, labels, [], params, cache)
    assert again.source == "computed" and np.array_equal(again.projection.embedding, first.projection.embedding)
    assert cached_map(digest, data_digest(images, labels), params, cache) is not None
