"""Zip and tar archives from strangers: the directory is checked (entries, unpacked size, compression ratio) before any
member is unpacked, and member paths are taken apart before any is trusted. A zip's entry count and directory size
come from its end record, read in constant time, before zipfile lists a single entry.

The one zip-bomb check, for dataset uploads, ``torch.save`` files and ``.keras`` files; and the index of a tar
file's members (WebDataset shards), read from its headers and never extracted, links never followed.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from explorer.errors import ExplorerError
from explorer.untrusted.files import human_size

# Deflate cannot pass ~1032x, and real members stay far below 200x: torch.save stores tensors uncompressed
# (1x), float weights deflate ~1.1x, PNGs are compressed already and compressed .npy image arrays land around
# 2-20x. Members under 1 MiB are exempt: they cannot exhaust memory, and small all-zero arrays (labels of one
# class) legitimately compress by far more.
MAX_ZIP_RATIO = 200
ZIP_RATIO_EXEMPT_BYTES = 2**20
# 100,000 images (the largest dataset upload) plus their class folders; torch.save writes one member per
# tensor storage and a .keras file about four.
MAX_ZIP_MEMBERS = 120_000

# A central directory entry is 46 bytes and its name, extra field and comment: real names stay far below 300
# bytes, so MAX_ZIP_MEMBERS entries fit in 40 MiB. A larger directory is refused before zipfile parses it.
MAX_ZIP_DIRECTORY_BYTES = 40 * 2**20

_CENTRAL_DIR_SIGNATURE = b"PK\x01\x02"
_EOCD = struct.Struct("<4s4H2LH")  # signature, disk, directory's disk, entries here, entries, size, offset, comment
_EOCD64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk of the zip64 record, its offset, disks
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # signature, record size, versions, disks, entries here, entries, size, offset
# NotImplementedError: a directory entry asking for a newer zip version ("zip file version 25.5")
_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError)


@dataclass(frozen=True)
class ZipDirectory:
    """What a zip archive's end records say of its central directory, and where it really lies in the bytes."""

    entries: int  # as stated by the end record (zip64's when there is one)
    size: int  # bytes of the directory, as stated
    start: int  # where it starts in these bytes (an archive may follow other data, as a self-extractor does)
    records: int  # directory-entry signatures counted between start and start + size: at least what zipfile makes


def zip_directory(data: bytes) -> ZipDirectory | None:
    """The central directory as the end-of-central-directory record (zip64's, when its locator precedes the
    classic one) describes it, read from the last 64 KiB and checked against the file; None when the bytes
    hold no such record, or it points outside them.

    Nothing is built per entry: this costs the same for an archive of ten entries and one that claims ten
    million, so a limit on ``entries``, ``records`` or ``size`` applies before zipfile lists anything."""
    n = len(data)
    at = data.rfind(b"PK\x05\x06", max(0, n - _EOCD.size - 0xFFFF))  # the record, then a comment of < 64 KiB
    if at < 0 or at + _EOCD.size > n:
        return None
    _, _, _, _, entries, size, _, _ = _EOCD.unpack_from(data, at)
    end = at  # the directory ends where the end records begin
    loc = at - _EOCD64_LOCATOR.size
    if loc >= 0 and data[loc : loc + 4] == b"PK\x06\x07":  # zip64: its record holds the figures
        rec = loc - _EOCD64.size  # the record sits just before its locator (with no extensible data)
        if rec < 0 or data[rec : rec + 4] != b"PK\x06\x06":
            return None
        fields = _EOCD64.unpack_from(data, rec)
        entries, size = fields[7], fields[8]
        end = rec
    start = end - size
    if start < 0:
        return None
    return ZipDirectory(entries, size, start, data.count(_CENTRAL_DIR_SIGNATURE, start, end))


def zip_entries(data: bytes) -> int:
    """How many entries zipfile would list for these bytes, at least (the larger of what the end record
    states and what the directory holds), read without listing them; 0 when there is no end record."""
    found = zip_directory(data)
    return 0 if found is None else max(found.entries, found.records)


def _directory_problem(data: bytes, label: str) -> str | None:
    """Why an archive's directory is refused before zipfile reads it, or None."""
    found = zip_directory(data)
    if found is None:
        return f"{label} is not a readable zip archive: it has no end-of-directory record; copy or download it again"
    count = max(found.entries, found.records)
    if count > MAX_ZIP_MEMBERS:
        return f"{label} has {count:,} entries; at most {MAX_ZIP_MEMBERS:,} are allowed"
    if found.size > MAX_ZIP_DIRECTORY_BYTES:
        return (
            f"{label} has a directory of {human_size(found.size)}; at most {human_size(MAX_ZIP_DIRECTORY_BYTES)} "
            "is allowed"
        )
    return None


def zip_names(data: bytes) -> list[str] | None:
    """The member names from the directory (nothing is unpacked), or None when the archive cannot be read or
    its directory is over the limits (``open_zip`` says which)."""
    if _directory_problem(data, "") is not None:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.namelist()
    except _ERRORS:
        return None


def open_zip(data: bytes, *, label: str, max_unpacked: int, error: type[ExplorerError]) -> zipfile.ZipFile:
    """A zip archive whose directory passed the bomb checks; refused before any member is unpacked.

    ``max_unpacked`` bounds the declared size of all members together. Read members with ``open_member``.
    """
    if (problem := _directory_problem(data, label)) is not None:
        raise error(problem)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except _ERRORS:
        raise error(
            f"{label} is not a readable zip archive: it is truncated or corrupt; copy or download it again"
        ) from None
    total = sum(info.file_size for info in infos)
    if total > max_unpacked:
        raise error(f"{label} would unpack to {human_size(total)}; at most {human_size(max_unpacked)} is allowed")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= ZIP_RATIO_EXEMPT_BYTES and ratio > MAX_ZIP_RATIO:
            raise error(
                f"{label}: member {info.filename!r} would expand {ratio:.0f}x ({info.compress_size} -> "
                f"{info.file_size} bytes), beyond the {MAX_ZIP_RATIO}x allowed; it looks like a zip bomb and "
                "was not unpacked"
            )
    return archive


@contextlib.contextmanager
def open_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo | str, *, label: str, error: type[ExplorerError]
) -> Iterator[BinaryIO]:
    """One member of an archive from ``open_zip``; zipfile stops at its declared size, which was checked."""
    name = info if isinstance(info, str) else info.filename
    try:
        with archive.open(info) as member:
            yield member  # type: ignore[misc]
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error) as exc:
        # BadZipFile's text is our kind of message ("Bad CRC-32 for file ...", "Truncated file header"); a member
        # whose header points before the start of the file raises ValueError ("negative seek value")
        raise error(f"{label}: member {name!r} cannot be unpacked ({exc}); the archive is damaged") from None
    except NotImplementedError:
        raise error(f"{label}: member {name!r} uses a compression method this reader does not support") from None
    except RuntimeError:  # zipfile's refusal of an encrypted member
        raise error(f"{label}: member {name!r} is encrypted; store it without a password") from None


def read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo | str, *, label: str, error: type[ExplorerError]
) -> bytes:
    with open_member(archive, info, label=label, error=error) as member:
        return member.read()


# --- safetensors ------------------------------------------------------------------------------------------


def member_path(name: str) -> tuple[str, ...] | None:
    """The parts of a member's path, or None for members never read: folders, hidden files, and paths that are
    absolute, start with a drive letter or climb out with ``..``."""
    name = name.replace("\\", "/")
    if name.endswith("/") or name.startswith("/") or ":" in name.split("/")[0]:  # folder, absolute, drive letter
        return None
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if not parts or ".." in parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return parts


# --- tar (WebDataset shards) ------------------------------------------------------------------------------

# A WebDataset shard holds a few thousand samples of a few members each; a million members is far beyond any.
MAX_TAR_MEMBERS = 1_000_000
MAX_TAR_MEMBER_BYTES = 64 * 2**20  # one image; larger members are left out unread


@dataclass(frozen=True)
class TarEntry:
    """A regular member of a plain tar file and where its bytes lie in it: read them with ``read_tar_member``."""

    name: str  # the member's path, taken apart by ``member_path`` and joined with "/"
    offset: int  # of its data, from the start of the file
    size: int


def tar_index(path: str | os.PathLike, *, label: str, error: type[ExplorerError]) -> tuple[list[TarEntry], list[str]]:
    """The regular members of an uncompressed tar file, read from its headers (nothing is extracted), and
    what was left out and why: links (never followed), devices, paths that climb out or are hidden, members
    over ``MAX_TAR_MEMBER_BYTES``, members that run past the end of the file. More than ``MAX_TAR_MEMBERS``
    members, or a file that is not a plain tar, raises ``error``; a damaged header ends the listing there."""
    entries: list[TarEntry] = []
    left_out: list[str] = []
    end = os.path.getsize(path)
    count = 0
    try:
        tar = tarfile.open(path, mode="r:")  # "r:": no compression, so every member can be read by seeking
    except (tarfile.TarError, OSError) as exc:
        raise error(f"{label} is not a plain (uncompressed) tar file ({exc})") from None
    with tar:
        while True:
            try:
                info = tar.next()
            except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
                left_out.append(f"the rest, after {count:,} members: a damaged header ({exc})")
                break
            if info is None:
                break
            tar.members.clear()  # type: ignore[attr-defined]  # it keeps every header read; the index is enough
            count += 1
            if count > MAX_TAR_MEMBERS:
                raise error(f"{label} has more than {MAX_TAR_MEMBERS:,} members; it was not read")
            if info.isdir():
                continue
            parts = member_path(info.name)
            if parts is None:
                left_out.append(f"{info.name!r}: a hidden member or a path that climbs out of the archive")
            elif not info.isreg() or info.issparse():
                left_out.append(f"{info.name!r}: a link or special file, never followed")
            elif info.size > MAX_TAR_MEMBER_BYTES:
                left_out.append(f"{info.name!r}: {human_size(info.size)}, more than {human_size(MAX_TAR_MEMBER_BYTES)}")
            elif info.offset_data + info.size > end:
                left_out.append(f"{info.name!r}: runs past the end of the file (truncated)")
            else:
                entries.append(TarEntry("/".join(parts), info.offset_data, info.size))
    return entries, left_out


def read_tar_member(f: BinaryIO, entry: TarEntry) -> bytes:
    """The bytes of a member ``tar_index`` listed, from the open tar file ``f``; OSError when they are not all there."""
    f.seek(entry.offset)
    data = f.read(entry.size)
    if len(data) != entry.size:
        raise OSError(f"{entry.name}: {len(data)} of {entry.size} bytes (truncated)")
    return data
