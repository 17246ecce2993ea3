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

import hashlib
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.errors import ExplorerError

if TYPE_CHECKING:
    from explorer.settings import Settings

SUFFIX = ".upload"
_DIGEST = re.compile(r"[0-9a-f]{64}")
STALE_TMP_S = 3600.0  # a temporary file this old belongs to a writer that died


class KeptError(ExplorerError):
    """A digest that is not one, or a file too large to keep."""


def check_digest(digest: object) -> str:
    """``digest`` as 64 lower-case hex characters, or KeptError (it may come from a URL)."""
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest.strip().lower()):
        shown = repr(digest)[:80]
        raise KeptError(f"{shown} is not a SHA-256 digest: expected 64 hexadecimal characters")
    return digest.strip().lower()


class KeptUploads:
    """``put(bytes) -> digest``, ``get(digest) -> bytes | None``; the least recently used go first."""

    def __init__(self, root: Path, *, max_bytes: int, max_age_s: float) -> None:
        if max_bytes < 1 or max_age_s <= 0:
            raise ValueError("the kept uploads need a positive size limit and a positive age limit")
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.max_age_s = float(max_age_s)

    def path(self, digest: str) -> Path:
        return self.root / f"{check_digest(digest)}{SUFFIX}"

    def put(self, data: bytes) -> str:
        """Keep ``data`` (once: the same bytes twice are one file) and return its digest."""
        if len(data) > self.max_bytes:
            raise KeptError(
                f"the file is {len(data):,} bytes, more than the {self.max_bytes:,} bytes all kept uploads may take "
                "together (EXPLORER_KEPT_MAX_MB)"
            )
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            _touch(target)  # kept already: now recently used
        else:
            # owner-only: uploads are other people's files
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            from explorer.maps.pipeline import atomic_write

            atomic_write(target, data, mode=0o600)
        self.prune()
        return digest

    def get(self, digest: str) -> bytes | None:
        """The kept bytes, or None when they were never kept, were pruned, or no longer match their digest."""
        target = self.path(digest)
        try:
            data = target.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != target.name[: -len(SUFFIX)]:
            target.unlink(missing_ok=True)  # damaged or replaced on disk: never hand it out
            return None
        if self._age(target) > self.max_age_s:
            target.unlink(missing_ok=True)  # expired: as if pruned already
            return None
        _touch(target)
        return data

    def __contains__(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def prune(self, now: float | None = None) -> int:
        """Delete what is too old, then the least recently used until the rest fits; returns how many went."""
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
            if now - st.st_mtime > self.max_age_s:
                p.unlink(missing_ok=True)
                removed += 1
                continue
            entries.append((st.st_mtime, st.st_size, p))
        from explorer.maps.pipeline import evict_to_fit  # the map cache's rule, least recently used first

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
            return [p for p in self.root.iterdir() if p.name.endswith((SUFFIX, ".tmp"))]
        except FileNotFoundError:
            return []

    def _age(self, path: Path) -> float:
        try:
            return time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return 0.0


def _touch(path: Path) -> None:
    """Mark as just used (the modification time is the clock for both limits)."""
    try:
        os.utime(path)
    except OSError:
        pass  # vanished, or a read-only volume: it still counts from its last write


def from_settings(settings: Settings) -> KeptUploads | None:
    """The store a host asked for with EXPLORER_KEEP_UPLOADS, or None when uploads are not kept."""
    if not settings.keep_uploads:
        return None
    return KeptUploads(settings.kept_dir, max_bytes=settings.kept_max_bytes, max_age_s=settings.kept_max_age_s)
