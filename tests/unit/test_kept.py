"""Kept uploads: stored once by digest, read back checked, pruned by age and by size, digests validated."""

import hashlib
import os
import time

import pytest

from explorer.kept import SUFFIX, KeptError, KeptUploads, check_digest, from_settings
from explorer.settings import load

MB = 2**20


@pytest.fixture
def store(tmp_path) -> KeptUploads:
    return KeptUploads(tmp_path / "kept", max_bytes=10 * MB, max_age_s=3600)


def _age(store: KeptUploads, digest: str, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(store.path(digest), (when, when))


def test_put_then_get(store):
    data = b"model bytes" * 100
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.get(digest) == data
    assert digest in store
    assert store.get(digest.upper()) == data, "a digest from a URL may be upper-case"


def test_the_same_bytes_are_kept_once(store):
    a = store.put(b"x" * 1000)
    b = store.put(b"x" * 1000)
    assert a == b
    assert len(list(store.root.glob(f"*{SUFFIX}"))) == 1
    assert store.total_bytes() == 1000


def test_files_are_private_and_no_temporary_file_is_left(store):
    digest = store.put(b"secret weights")
    assert store.path(digest).stat().st_mode & 0o077 == 0
    assert store.root.stat().st_mode & 0o077 == 0
    assert [p.name for p in store.root.iterdir()] == [f"{digest}{SUFFIX}"]


def test_unknown_digest_is_none(store):
    assert store.get("0" * 64) is None


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "0" * 63, "0" * 65, "../" + "0" * 61, None, 42])
def test_bad_digests_are_refused(store, bad):
    with pytest.raises(KeptError, match="not a SHA-256 digest"):
        store.get(bad)
    with pytest.raises(KeptError):
        check_digest(bad)


def test_a_damaged_file_is_dropped_not_served(store):
    digest = store.put(b"original")
    store.path(digest).write_bytes(b"tampered")
    assert store.get(digest) is None
    assert digest not in store


def test_old_uploads_expire(store):
    old = store.put(b"old")
    new = store.put(b"new")
    _age(store, old, 7200)
    assert store.get(old) is None, "past the age limit it is gone even before a prune"
    _age(store, new, 1800)
    assert store.prune() == 0
    assert store.get(new) == b"new"


def test_prune_by_age_and_stale_temporary_files(store):
    old = store.put(b"old")
    _age(store, old, 7200)
    stale = store.root / ".deadbeef.123.ab.tmp"
    stale.write_bytes(b"half")
    os.utime(stale, (time.time() - 7200,) * 2)
    assert store.prune() == 1
    assert not stale.exists() and old not in store


def test_least_recently_used_go_first_past_the_size_limit(tmp_path):
    store = KeptUploads(tmp_path, max_bytes=3 * MB, max_age_s=86400)
    first = store.put(b"a" * MB)
    second = store.put(b"b" * MB)
    _age(store, first, 300)
    _age(store, second, 200)
    assert store.get(first) is not None  # reading it makes it the most recently used
    store.put(b"c" * MB)
    store.put(b"d" * MB)  # four MB in a three MB store: the least recently used goes
    assert second not in store
    assert first in store
    assert store.total_bytes() <= 3 * MB


def test_a_file_larger_than_the_store_is_refused(tmp_path):
    store = KeptUploads(tmp_path, max_bytes=MB, max_age_s=60)
    with pytest.raises(KeptError, match="EXPLORER_KEPT_MAX_MB"):
        store.put(b"x" * (MB + 1))


def test_a_missing_folder_is_an_empty_store(tmp_path):
    store = KeptUploads(tmp_path / "nowhere", max_bytes=MB, max_age_s=60)
    assert store.prune() == 0 and store.total_bytes() == 0 and store.get("a" * 64) is None


def test_the_store_is_made_only_when_the_host_asks(tmp_path):
    assert from_settings(load({})) is None
    kept = from_settings(
        load({"EXPLORER_KEEP_UPLOADS": "1", "EXPLORER_CACHE_DIR": str(tmp_path), "EXPLORER_KEPT_MAX_MB": "5"})
    )
    assert kept is not None and kept.root == tmp_path / "uploads" and kept.max_bytes == 5 * MB
