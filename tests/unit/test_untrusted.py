"""explorer.untrusted's parsers on hostile bytes: image bombs, archives that climb out or lie about their
sizes, malformed .npy and IDX headers. Every file is made here."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from explorer.data import load_user_dataset
from explorer.data.uploads import load_user_image
from explorer.errors import CheckpointError, DatasetError
from explorer.untrusted import archive as untrusted_archive
from explorer.untrusted import images, member_path, open_zip, read_member
from explorer.untrusted.idx import read_idx
from explorer.untrusted.npy import npy_header


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height grey pixels, with a few bytes of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(bytes(64))) + _chunk(b"IEND", b"")
    )


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# --- images


def test_pil_bound_is_set_deliberately():
    assert Image.MAX_IMAGE_PIXELS == images.MAX_IMAGE_PIXELS == 2**24


@pytest.mark.parametrize(
    "size",
    [(5000, 4000), (100_000, 100_000)],  # PIL's warning zone (bound to twice it), and far beyond: its error
)
def test_image_header_claiming_a_huge_size_is_refused_before_decoding(size):
    blob = png_claiming(*size)
    with pytest.raises(DatasetError, match=r"header claims more than 16777216 pixels; it was refused before decoding"):
        images.decode_image(blob, max_pixels=2**40, name="x.png", label="huge.png", single=True)
    with pytest.raises(DatasetError, match="huge.png is an image whose header claims more than"):
        load_user_image(blob, filename="huge.png", input_shape=(1, 28, 28))
    with pytest.raises(DatasetError, match=r"bomb.zip: a/huge.png is an image whose header claims more than"):
        load_user_dataset(_zip({"a/huge.png": blob}), filename="bomb.zip")


def test_image_over_the_callers_bound_names_its_size():
    with pytest.raises(DatasetError, match=r"big.png is 3000x3000 pixels; images may have at most 4194304 pixels"):
        images.decode_image(png_claiming(3000, 3000), max_pixels=4 * 1024**2, name="", label="big.png", single=True)


def test_a_small_image_decodes():
    buf = io.BytesIO()
    Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(buf, format="PNG")
    out = images.decode_image(buf.getvalue(), max_pixels=100, name="a.png", label="z.zip")
    assert out.dtype == np.uint8 and out.shape == (3, 4) and out[2, 3] == 11


# --- archives


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("ok/1.png", ("ok", "1.png")),
        ("./ok//1.png", ("ok", "1.png")),
        ("../evil.png", None),
        ("a/../../evil.png", None),
        ("a\\..\\..\\evil.png", None),
        ("/etc/passwd", None),
        ("C:/Windows/evil.png", None),
        ("folder/", None),
        (".hidden/1.png", None),
        ("__MACOSX/ok/1.png", None),
    ],
)
def test_member_paths_never_climb_out(name, parts):
    assert member_path(name) == parts


def test_path_traversal_member_in_an_upload_is_never_read():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(buf, format="PNG")
    blob = _zip({"../../outside/evil.png": buf.getvalue(), "/abs/evil.png": buf.getvalue()})
    with pytest.raises(DatasetError, match="holds no image files"):
        load_user_dataset(blob, filename="climb.zip")


def test_zip_bomb_declared_size_refused_from_the_directory():
    blob = _zip({"zeros.bin": bytes(64 * 2**20)})
    assert len(blob) < 2**20  # small compressed, huge declared
    with pytest.raises(CheckpointError, match=r"would expand \d+x .* it looks like a zip bomb"):
        open_zip(blob, label="bomb.zip", max_unpacked=2**30, error=CheckpointError)
    with pytest.raises(CheckpointError, match="would unpack to 64 MiB; at most 1 MiB is allowed"):
        open_zip(blob, label="bomb.zip", max_unpacked=2**20, error=CheckpointError)


def test_zip_member_lying_about_its_size_unpacks_no_more_than_it_declares():
    actual, declared = 32 * 2**20, 1000
    blob = bytearray(_zip({"zeros.bin": bytes(actual)}))
    # the uncompressed size in the local header (offset 22) and in the central directory entry (offset 24)
    local = blob.index(b"PK\x03\x04")
    central = blob.index(b"PK\x01\x02")
    struct.pack_into("<I", blob, local + 22, declared)
    struct.pack_into("<I", blob, central + 24, declared)
    with open_zip(bytes(blob), label="liar.zip", max_unpacked=2**20, error=DatasetError) as archive:
        assert archive.infolist()[0].file_size == declared  # the checks saw a small member
        with pytest.raises(DatasetError, match="liar.zip: member 'zeros.bin' cannot be unpacked .*damaged"):
            read_member(archive, "zeros.bin", label="liar.zip", error=DatasetError)


# --- .npy headers


def _npy(header: bytes, data: bytes = b"") -> bytes:
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


@pytest.mark.parametrize(
    ("member", "pattern"),
    [
        (_npy(b"{'descr': '|u1', 'fortran_order': False, 'shape': (2, -3), }"), "not a valid .npy array"),
        (_npy(b"__import__('os').system('true')"), "not a valid .npy array"),
        (_npy(b"{'descr': 'not a dtype', 'fortran_order': False, 'shape': (2,), }"), "not a valid .npy array"),
        (b"\x93NUMPY\x01\x00\xff\xff{'descr'", "not a valid .npy array"),  # header longer than the member
        (b"\x93NUMPY\x07\x00", r"format version \(7, 0\)"),  # a version savez never writes
        (_npy(b"{'descr': '|O', 'fortran_order': False, 'shape': (2,), }"), "holds Python objects"),
        (_npy(b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }"), "declares shape"),
    ],
)
def test_malformed_npy_header_refused(member, pattern):
    blob = _zip({"images.npy": member}, zipfile.ZIP_STORED)
    with open_zip(blob, label="bad.npz", max_unpacked=2**30, error=DatasetError) as archive:
        with pytest.raises(DatasetError, match=f"bad.npz: .*{pattern}"):
            npy_header(archive, archive.infolist()[0], label="bad.npz", max_bytes=2**30)
    with pytest.raises(DatasetError, match=pattern):
        load_user_dataset(blob, filename="bad.npz")


# --- IDX headers


@pytest.mark.parametrize(
    ("blob", "pattern"),
    [
        (b"", "not an IDX file: it must start with two zero bytes"),
        (b"\x01\x00\x08\x01" + bytes(4), "not an IDX file"),
        (b"\x00\x00\x0d\x01" + bytes(4), r"type code 0x0D \(float32\) is not supported"),
        (b"\x00\x00\x08\x00", "declares 0 dimensions; expected 1 to 4"),
        (b"\x00\x00\x08\x09", "declares 9 dimensions; expected 1 to 4"),
        (b"\x00\x00\x08\x03" + bytes(5), r"truncated inside its header \(9 of 16 bytes\)"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 2**16, 2**16), "more than the limit"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 10) + bytes(3), "is truncated: its header declares shape"),
    ],
)
def test_malformed_idx_header_refused(blob, pattern):
    with pytest.raises(DatasetError, match=pattern):
        read_idx(blob, max_bytes=2**20)


# --- a zip's directory, judged from its end record ----------------------------------------------------------

_NAME = b"0000000.png"
_LOCAL = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(_NAME), 0) + _NAME
_ENTRY = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(_NAME), 0, 0, 0, 0, 0, 0) + _NAME


def many_entries(n: int, *, zip64: bool = False, stated: int | None = None, prefix: bytes = b"") -> bytes:
    """A zip of ``n`` directory entries for one empty member (a name listed ``n`` times), built in one
    multiplication: a 1.5-million-entry archive takes a blink. ``stated``: the count the end record claims."""
    stated = n if stated is None else stated
    directory = _ENTRY * n
    at = len(prefix) + len(_LOCAL)
    end = b""
    if zip64:
        record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, stated, stated, len(directory), at)
        end = record + struct.pack("<4sLQL", b"PK\x06\x07", 0, at + len(directory), 1)
        stated, size, offset = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
    else:
        size, offset = len(directory), at
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, min(stated, 0xFFFF), min(stated, 0xFFFF), size, offset, 0)
    return prefix + _LOCAL + directory + end + eocd


@pytest.mark.parametrize("zip64", [False, True])
def test_end_record_gives_the_entry_count_zipfile_finds(zip64):
    n = 70_000 if zip64 else 60_000  # over 65,535 entries, a zip64 record is how real writers say it
    blob = many_entries(n, zip64=zip64)
    found = untrusted_archive.zip_directory(blob)
    assert found is not None and found.entries == found.records == n
    assert len(zipfile.ZipFile(io.BytesIO(blob)).infolist()) == n  # zipfile agrees
    real = _zip({f"{i}.png": b"x" for i in range(5)})  # and on what zipfile itself writes
    found = untrusted_archive.zip_directory(real)
    assert found is not None and (found.entries, found.records) == (5, 5)
    assert untrusted_archive.zip_directory(b"PK\x03\x04 no end record") is None


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (many_entries(1_500_000), "has 1,500,000 entries; at most 120,000"),
        (many_entries(1_500_000, zip64=True), "has 1,500,000 entries; at most 120,000"),
        (many_entries(10, zip64=True, stated=10**15), "has 1,000,000,000,000,000 entries"),  # a zip64 boast
        (many_entries(200_000, stated=3), "has 200,000 entries"),  # the end record understates the directory
        (b"PK\x03\x04" + bytes(40), "no end-of-directory record"),
    ],
    ids=["1.5M entries", "1.5M entries zip64", "zip64 claims 10^15", "understated count", "no end record"],
)
def test_archive_over_the_limits_is_refused_before_zipfile_lists_anything(blob, message, monkeypatch):
    def listing(*args, **kwargs):
        raise AssertionError("zipfile read a directory that is over the limits")

    monkeypatch.setattr(untrusted_archive.zipfile, "ZipFile", listing)
    with pytest.raises(DatasetError, match=message):
        open_zip(blob, label="big.zip", max_unpacked=2**30, error=DatasetError)
    assert untrusted_archive.zip_names(blob) is None


def test_a_huge_directory_of_long_names_is_refused_by_its_size(monkeypatch):
    monkeypatch.setattr(untrusted_archive, "MAX_ZIP_DIRECTORY_BYTES", 1_000)
    with pytest.raises(DatasetError, match=r"has a directory of .*; at most"):
        open_zip(many_entries(100), label="names.zip", max_unpacked=2**30, error=DatasetError)


def test_signature_bytes_inside_members_do_not_count_as_entries(monkeypatch):
    # a stored member whose bytes happen to hold the directory signature many times (random weights can)
    blob = _zip({"weights.bin": b"PK\x01\x02" * 500, "b.txt": b"x"}, compression=zipfile.ZIP_STORED)
    monkeypatch.setattr(untrusted_archive, "MAX_ZIP_MEMBERS", 10)
    with open_zip(blob, label="ok.zip", max_unpacked=2**30, error=DatasetError) as archive:
        assert sorted(archive.namelist()) == ["b.txt", "weights.bin"]
    prefixed = many_entries(3, prefix=b"#!/bin/sh\nexit 0\n" + b"PK\x01\x02" * 50)  # data before the archive
    found = untrusted_archive.zip_directory(prefixed)
    assert found is not None and found.records == 3
