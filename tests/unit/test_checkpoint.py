"""Malformed checkpoints raise CheckpointError with a message that says what is wrong."""

import json
import struct

import pytest
import torch

from explorer import CheckpointError, ExplorerError, models
from explorer.checkpoint import checkpoint_bytes, load_checkpoint, read_metadata, save_checkpoint


@pytest.fixture
def good() -> bytes:
    model = models.build(models.config_class("ae")(hidden=(16,), latent_dim=4))
    return checkpoint_bytes(model, dataset={"name": "unit"}, training={"device": "cpu"}, metrics={})


def split(buf: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", buf[:8])
    return json.loads(buf[8 : 8 + n]), buf[8 + n :]


def join(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def test_error_family():
    assert issubclass(CheckpointError, ExplorerError)


def test_path_and_bytes_both_load(good, tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(good)
    assert load_checkpoint(path).kind == "ae"
    assert load_checkpoint(good).kind == "ae"
    assert read_metadata(path)["dataset"] == {"name": "unit"}


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    model = models.build(models.config_class("ae")(hidden=(16,), latent_dim=4))
    save_checkpoint(model, tmp_path / "a.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"]


def _nan(buf):
    header, data = split(buf)
    key = next(k for k in header if k != "__metadata__")
    begin = header[key]["data_offsets"][0]
    data = data[:begin] + struct.pack("<f", float("nan")) + data[begin + 4 :]
    return join(header, data)


def _shape(buf):
    header, data = split(buf)
    header["encoder.1.weight"]["shape"] = [
        header["encoder.1.weight"]["shape"][1],
        header["encoder.1.weight"]["shape"][0],
    ]
    return join(header, data)


def _missing(buf):
    header, data = split(buf)
    info = header.pop("decoder.0.bias")
    begin, end = info["data_offsets"]
    for v in header.values():
        if "data_offsets" in v and v["data_offsets"][0] >= end:
            v["data_offsets"] = [v["data_offsets"][0] - (end - begin), v["data_offsets"][1] - (end - begin)]
    return join(header, data[:begin] + data[end:])


def _overlap(buf):
    header, data = split(buf)
    keys = [k for k in header if k != "__metadata__"]
    header[keys[1]]["data_offsets"] = list(header[keys[0]]["data_offsets"])
    header[keys[1]]["shape"] = header[keys[0]]["shape"]
    return join(header, data)


def _huge_tensor(buf):
    header, data = split(buf)
    header["encoder.1.bias"] = {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}
    return join(header, data)


def _meta(buf, **changes):
    header, data = split(buf)
    header["__metadata__"].update(changes)
    return join(header, data)


def _config(buf, **changes):
    header, data = split(buf)
    doc = json.loads(header["__metadata__"]["explorer"])
    doc["config"].update(changes)
    header["__metadata__"]["explorer"] = json.dumps(doc)
    return join(header, data)


CASES = {
    "empty": (lambda b: b"", "empty"),
    "truncated": (lambda b: b[: len(b) // 2], "truncated"),
    "seven bytes": (lambda b: b[:7], "too short"),
    "pickle": (lambda b: b"\x80\x04\x95" + b"\x00" * 40, "Python pickle"),
    "zip": (lambda b: b"PK\x03\x04" + b"\x00" * 40, "zip archive"),
    "header claims 2^62 bytes": (lambda b: struct.pack("<Q", 2**62) + b[8:], "header claims"),
    "header not json": (lambda b: struct.pack("<Q", 4) + b"{{{{", "not valid JSON"),
    "terabyte tensor": (_huge_tensor, "data ends at byte"),
    "overlapping offsets": (_overlap, "overlaps"),
    "nan weights": (_nan, "NaN or Inf"),
    "wrong shape": (_shape, "has shape [784, 16], expected [16, 784]"),
    "missing key": (_missing, "missing keys ['decoder.0.bias']"),
    "no metadata": (lambda b: _meta(b, format="other"), "no latent-explorer metadata"),
    "future version": (lambda b: _meta(b, format_version="99"), "format version '99' is not supported"),
    "unknown kind": (lambda b: _config(b, kind="gan"), "unknown model kind 'gan'"),
    "unknown option": (lambda b: _config(b, beta=2.0), "unknown config key"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_checkpoint_is_refused_with_a_specific_message(name, good):
    make, message = CASES[name]
    with pytest.raises(CheckpointError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_checkpoint(make(good))


def test_one_size_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as fh:
        fh.truncate(2 * 2**30 + 1)  # sparse: nothing is written, but stat() reports the size
    with pytest.raises(CheckpointError, match=r"huge.safetensors is 2 GiB, more than the 2 GiB allowed"):
        load_checkpoint(path)


def test_foreign_file_is_named_with_its_file_name(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x80\x04\x95" + bytes(40))
    with pytest.raises(
        CheckpointError, match=r"^model.safetensors: this is a Python pickle .*`python -m explorer import"
    ):
        read_metadata(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint file at"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_loader_never_reaches_pickle(good, monkeypatch):
    import pickle

    def boom(*a, **k):
        raise AssertionError("pickle was called")

    monkeypatch.setattr(pickle, "loads", boom)
    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(torch, "load", boom)
    assert load_checkpoint(good).kind == "ae"


@pytest.mark.parametrize("pad", [0, 1, 200, 600])
def test_header_lengths_that_look_like_pickle_bytes_still_load(pad):
    """A header of 640 bytes starts 0x80 0x02, like a pickle; it must still load."""
    model = models.build(models.config_class("ae")(hidden=(16,), latent_dim=4))
    for extra in range(pad, pad + 300):
        buf = checkpoint_bytes(model, dataset={"name": "x" * extra})
        if buf[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
            assert load_checkpoint(buf).kind == "ae"
            return
    pytest.skip("no header length in this range starts like a pickle")
