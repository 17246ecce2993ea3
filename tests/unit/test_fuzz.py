"""The fuzz targets of ``benchmarks.fuzz`` (every parser of a stranger's bytes) on a short profile, and the
crashes the long runs found, kept as regression tests."""

import base64
import io
import struct
import tracemalloc
import zipfile
import zlib

import pytest

from benchmarks.fuzz import TARGETS, check, run
from explorer.errors import DatasetError
from explorer.ui.urlstate import decode_ids
from explorer.untrusted import open_zip, read_member

EXAMPLES = 60  # per target: a few seconds each; `python -m benchmarks.fuzz` runs the long profile


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_a_parser_returns_or_refuses_whatever_it_is_fed(target):
    for seed in target.seeds():  # the valid files themselves are read
        check(target, seed)
    assert run(target, EXAMPLES) == []


def test_a_member_whose_header_lies_before_the_file_is_refused_not_crashed():
    # found by the fuzzer: the end record places the directory later than it is, so zipfile seeks to a
    # negative position for the first member and raises ValueError, not BadZipFile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a/0.png", b"x" * 100)
    data = bytearray(buf.getvalue())
    at = data.rfind(b"PK\x05\x06")
    offset = struct.unpack_from("<L", data, at + 16)[0]
    struct.pack_into("<L", data, at + 16, offset + 200)
    with open_zip(bytes(data), label="f.zip", max_unpacked=2**20, error=DatasetError) as archive:
        with pytest.raises(DatasetError, match="member 'a/0.png' cannot be unpacked"):
            read_member(archive, archive.infolist()[0], label="f.zip", error=DatasetError)


def test_a_link_selection_of_ten_million_set_bits_is_refused_from_its_bytes():
    text = base64.urlsafe_b64encode(zlib.compress(b"\xff" * 1_250_000, 9)).decode().rstrip("=")
    assert len(text) < 6000  # short enough for an address
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"names image #9999999, but this map has 1,000 images"):
        decode_ids(text, 1000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20  # the bitmap (1.25 MB) and its bits, never ten million integers
    assert decode_ids(base64.urlsafe_b64encode(zlib.compress(b"\xff\x01")).decode().rstrip("="), 9) == tuple(range(9))
    with pytest.raises(ValueError, match="names image #8, but this map has 8 images"):
        decode_ids(base64.urlsafe_b64encode(zlib.compress(b"\xff\x01")).decode().rstrip("="), 8)


def test_a_directory_entry_asking_for_a_newer_zip_version_is_refused_not_crashed():
    # found by the fuzzer: zipfile raises NotImplementedError("zip file version 25.5") while listing
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("cats/0.png", b"x")
    data = bytearray(buf.getvalue())
    at = data.find(b"PK\x01\x02")
    data[at + 6] = 255  # "version needed to extract": 25.5
    with pytest.raises(DatasetError, match="not a readable zip archive"):
        open_zip(bytes(data), label="f.zip", max_unpacked=2**20, error=DatasetError)
