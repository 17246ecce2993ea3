"""Uploaded files kept on disk, named by the SHA-256 of their bytes, bounded in total size and in age.

Off by default (uploads live in the uploading browser session only); a host turns it on with
EXPLORER_KEEP_UPLOADS so a model someone uploaded can be opened again from a link that carries its
digest, after a restart or on another replica sharing the folder. The digest is the only name: a
stranger cannot choose a path, and holding a digest means having had the bytes (or the link).

Several server processes may share the folder: writes go to a unique temporary file and are renamed
into place (readers never see half a file), and every listing tolerates files vanishing under it.
What is read back is checked against its digest, so a damaged or swapped file is dropped, never used.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.errors import ExplorerError
from explorer.store import STALE_TMP_S, DiskCache

if TYPE_CHECKING:
    from explorer.settings import Settings

SUFFIX = ".upload"
_DIGEST = re.compile(r"[0-9a-f]{64}")
__all__ = ["STALE_TMP_S", "SUFFIX", "KeptError", "KeptUploads", "check_digest", "from_settings"]


class KeptError(ExplorerError):
    """A digest that is not one, or a file too large to keep."""


def check_digest(digest: object) -> str:
    """``digest`` as 64 lower-case hex characters, or KeptError (it may come from a URL)."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest.strip().lower()):
        shown = repr(digest)[:80]
        raise KeptError(f"{shown} is not a SHA-256 digest: expected 64 hexadecimal characters")
    return digest.strip().lower()


class KeptUploads:
    """``put(bytes) -> digest``, ``get(digest) -> bytes | None``; the least recently used go first.

    The explorer's one disk store (explorer.store.DiskCache), private and checked against its digests, with
    what a person sees: digests from links are checked, and a file too large for the store is refused by name."""

    def __init__(self, root: Path, *, max_bytes: int, max_age_s: float) -> None:
        if max_bytes < 1 or max_age_s <= 0:
            raise ValueError("the kept uploads need a positive size limit and a positive age limit")
        self._store = DiskCache(root, max_bytes, suffix=SUFFIX, max_age_s=max_age_s, private=True, verify=True)

    @property
    def root(self) -> Path:
        return self._store.root

    @property
    def max_bytes(self) -> int:
        return self._store.max_bytes

    @property
    def max_age_s(self) -> float:
        return float(self._store.max_age_s or 0.0)

    def path(self, digest: str) -> Path:
        return self._store.path(check_digest(digest))

    def put(self, data: bytes) -> str:
        """Keep ``data`` (once: the same bytes twice are one file) and return its digest."""
        if len(data) > self.max_bytes:
            raise KeptError(
                f"the file is {len(data):,} bytes, more than the {self.max_bytes:,} bytes all kept uploads may take "
                "together (EXPLORER_KEPT_MAX_MB)"
            )
        return self._store.add(data)

    def get(self, digest: str) -> bytes | None:
        """The kept bytes, or None when they were never kept, were pruned, or no longer match their digest."""
        return self._store.get(check_digest(digest))

    def __contains__(self, digest: str) -> bool:
        return check_digest(digest) in self._store

    def prune(self, now: float | None = None) -> int:
        """Delete what is too old, then the least recently used until the rest fits; returns how many went."""
        return self._store.prune(now)

    def total_bytes(self) -> int:
        return self._store.total_bytes()


def from_settings(settings: Settings) -> KeptUploads | None:
    """The store a host asked for with EXPLORER_KEEP_UPLOADS, or None when uploads are not kept."""
    if not settings.keep_uploads:
        return None
    return KeptUploads(settings.kept_dir, max_bytes=settings.kept_max_bytes, max_age_s=settings.kept_max_age_s)
