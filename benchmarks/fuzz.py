"""``python -m benchmarks.fuzz [--examples 20000] [--only NAME ...]``: every parser of a stranger's bytes, fed
files that are almost right.

Each target starts from small valid files made here (a safetensors checkpoint, a zip of PNGs, .npy and .npz
arrays, PNG and JPEG images, IDX files plain and gzipped, a ``.keras`` model and its ``config.json``, and the
selection and control values of a link) and hypothesis mutates them: bytes flipped, set to boundary integers
(0, 2**31, 2**32 - 1, ...), inserted, deleted, truncated, and pieces of one file spliced into another; random
bytes behind the right magic, too. A target may return a result or raise the project's own error (for the
link's values, the ValueError its readers document); anything else, or an example running past
``LIMIT_S``, is a failure: printed with the input that caused it, and the run exits 1.

The same targets run in CI with a short profile (``tests/unit/test_fuzz.py``); each crash found becomes a
regression test there.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import signal
import struct
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.errors import ExplorerError

LIMIT_S = 10.0  # one example; the slowest valid input here takes well under a second
BOUNDARY = (0, 1, 7, 255, 256, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1)


@dataclass(frozen=True)
class Target:
    name: str
    seeds: Callable[[], list[bytes]]
    call: Callable[[bytes], object]
    allowed: tuple[type[BaseException], ...] = (ExplorerError,)


# --- seeds: small valid files, made once --------------------------------------------------------------------


def _png(image: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


@cache
def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (28, 28), dtype=np.uint8), rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)]


@cache
def image_seeds() -> list[bytes]:
    grey, colour = _images()
    return [_png(grey), _png(colour), _png(grey, "JPEG"), _png(colour, "JPEG")]


@cache
def safetensors_seeds() -> list[bytes]:
    from safetensors.numpy import save

    tensors: dict[str, np.ndarray] = {
        "encoder.0.weight": np.ones((4, 3), np.float32),
        "decoder.0.bias": np.zeros(5, np.float16),
    }
    return [save(tensors, metadata={"format": "pt", "explorer": json.dumps({"config": {"kind": "ae"}})}), save({})]


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@cache
def dataset_seeds() -> list[bytes]:
    images = np.stack([_images()[0]] * 3)
    npz = io.BytesIO()
    np.savez(npz, images=images, labels=np.array([0, 1, 1]), class_names=np.array(["a", "b"]))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cats/0.png", image_seeds()[0])
        z.writestr("dogs/1.jpg", image_seeds()[2])
    return [_npy(images), npz.getvalue(), archive.getvalue()]


@cache
def idx_seeds() -> list[bytes]:
    images = np.stack(_images()[:1] * 2)
    plain = struct.pack(">HBB3I", 0, 0x08, 3, *images.shape) + images.tobytes()
    labels = struct.pack(">HBBI", 0, 0x08, 1, 2) + bytes([3, 7])
    return [plain, labels, gzip.compress(plain)]


@cache
def keras_seeds() -> list[bytes]:
    """A ``.keras`` file as Keras writes it: Dense 784-32-784, ReLU then sigmoid."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(32, "relu"), keras.layers.Dense(784, "sigmoid")])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "m.keras")
        model.save(path)
        return [path.read_bytes()]


@cache
def keras_config_seeds() -> list[bytes]:
    with zipfile.ZipFile(io.BytesIO(keras_seeds()[0])) as z:
        return [z.read("config.json")]


def link_seeds() -> list[bytes]:
    from explorer.ui.urlstate import encode_ids

    return [encode_ids([0, 5, 999]).encode(), encode_ids(list(range(0, 1000, 3))).encode(), b"steps=16&temp=0.5"]


# --- the calls -------------------------------------------------------------------------------------------------


def _zip(data: bytes) -> None:
    from explorer.errors import DatasetError
    from explorer.untrusted import open_zip, read_member

    with open_zip(data, label="f.zip", max_unpacked=2**26, error=DatasetError) as archive:
        for info in archive.infolist()[:50]:
            read_member(archive, info, label="f.zip", error=DatasetError)


def _dataset(name: str) -> Callable[[bytes], object]:
    def call(data: bytes) -> object:
        from explorer.data import load_user_dataset

        return load_user_dataset(data, filename=name, input_shape=(1, 28, 28))

    return call


def _upload(data: bytes) -> object:
    # the dataset door guesses nothing from the name a stranger gives: try the three kinds it takes
    from explorer.untrusted import sniff

    kind = sniff(data)
    name = {"zip": "f.zip", "npy": "f.npy"}.get(kind or "", "f.npz")
    return _dataset(name)(data)


def _image(data: bytes) -> object:
    from explorer.untrusted.images import decode_image

    return decode_image(data, max_pixels=2**22, name="f.png", label="f.png", single=True)


def _idx(data: bytes) -> object:
    from explorer.untrusted.idx import read_idx

    return read_idx(data, max_bytes=2**24)


def _keras(data: bytes) -> object:
    from explorer.untrusted.keras import read_keras

    return read_keras(data, "m.keras")


def _keras_config(data: bytes) -> object:
    from explorer.errors import CheckpointError
    from explorer.untrusted.keras_graph import read_chain

    try:
        config = json.loads(data)
    except (ValueError, RecursionError):
        raise CheckpointError("config.json is not JSON") from None  # what _read_zip says of such a file
    if not isinstance(config, dict):
        raise CheckpointError("config.json is not an object")
    return read_chain(config, "m.keras")


def _safetensors(data: bytes) -> object:
    from explorer.untrusted import load_safetensors

    return load_safetensors(data, label="f.safetensors")


def _safetensors_header(data: bytes) -> object:
    from explorer.untrusted import read_header

    return read_header(data, label="f.safetensors")


def _link_selection(data: bytes) -> object:
    from explorer.ui.urlstate import decode_ids

    return decode_ids(data.decode("latin-1"), 1000)


def _link_fields(data: bytes) -> object:
    from urllib.parse import parse_qsl

    from explorer.ui.links import PAGE_FIELDS
    from explorer.ui.urlstate import read

    return read(dict(parse_qsl(data.decode("latin-1"))), PAGE_FIELDS)


TARGETS = [
    Target("safetensors header", safetensors_seeds, _safetensors_header),
    Target("safetensors", safetensors_seeds, _safetensors),
    Target("zip", dataset_seeds, _zip),
    Target("dataset upload (npy, npz, zip)", dataset_seeds, _upload),
    Target("image (PNG, JPEG)", image_seeds, _image),
    Target("idx", idx_seeds, _idx),
    Target("keras archive", keras_seeds, _keras),
    Target("keras config", keras_config_seeds, _keras_config),
    Target("link selection", link_seeds, _link_selection, (ValueError,)),
    Target("link fields", link_seeds, _link_fields, ()),
]


# --- mutation --------------------------------------------------------------------------------------------------


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """One of ``seeds`` with a few mutations, or random bytes behind a seed's first four."""
    seed = draw(st.sampled_from(seeds))
    if draw(st.integers(0, 9)) == 0:
        return seed[:4] + draw(st.binary(max_size=256))
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "boundary", "insert", "delete", "truncate", "splice"]))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "boundary":
            width, order = draw(st.sampled_from([(2, "<"), (4, "<"), (8, "<"), (4, ">"), (8, ">")]))
            value = draw(st.sampled_from(BOUNDARY)) % (1 << (8 * width))
            data[at : at + width] = value.to_bytes(width, "little" if order == "<" else "big")
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "truncate":
            del data[at:]
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, max(0, len(other) - 1)))
            data[at : at + 32] = other[start : start + 32]
    return bytes(data)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"ran past {LIMIT_S:.0f} s")


def check(target: Target, data: bytes) -> None:
    """One example: a result or an allowed error, within the time limit; anything else raises AssertionError."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, LIMIT_S)
    try:
        target.call(data)
    except target.allowed:
        pass
    except Hang as exc:
        raise AssertionError(f"{target.name}: {exc} on {data[:64]!r}... ({len(data)} bytes)") from None
    except Exception as exc:  # the finding: another exception type escaped
        raise AssertionError(
            f"{target.name}: {type(exc).__name__}: {exc} on {data[:64]!r}... ({len(data)} bytes)"
        ) from exc
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def run(target: Target, examples: int, *, seed: int | None = None, tried: list[int] | None = None) -> list[str]:
    """Fuzz one target for ``examples`` examples; returns the failures (hypothesis shrinks the first one).
    ``tried`` (a list) gets the number of inputs actually run appended."""
    seeds = target.seeds()
    failures: list[str] = []
    count = [0]

    @settings(max_examples=examples, deadline=None, database=None, derandomize=seed is not None,
              suppress_health_check=list(HealthCheck), print_blob=False)  # fmt: skip
    @given(mutated(seeds))
    def fuzz(data: bytes) -> None:
        count[0] += 1
        check(target, data)

    try:
        fuzz()
    except AssertionError as exc:
        failures.append(str(exc).splitlines()[0])
    if tried is not None:
        tried.append(count[0])
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20_000, help="examples over all targets together")
    parser.add_argument("--only", nargs="*", help="targets whose name starts with one of these")
    args = parser.parse_args(argv)
    targets = [t for t in TARGETS if not args.only or any(t.name.startswith(o) for o in args.only)]
    each = max(1, args.examples // len(targets))
    print(f"{'target':<32} {'inputs':>9} {'seconds':>8}  failures")
    total, failed = 0, 0
    for target in targets:
        t0 = time.perf_counter()
        tried: list[int] = []
        failures = run(target, each, tried=tried)
        total += tried[0]
        failed += len(failures)
        print(
            f"{target.name:<32} {tried[0]:>9,} {time.perf_counter() - t0:8.1f}  {'; '.join(failures) or 0}", flush=True
        )
    print(f"\n{total:,} inputs run over {len(targets)} targets, {failed} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
