"""Datasets people upload: a .npz of arrays or a .zip of PNG/JPEG images in class folders.

Uploads are hostile until proven otherwise: every byte is parsed by ``explorer.untrusted`` (one size limit,
format by content, the zip-bomb check on the archive's directory, .npy headers and image headers checked
before their data is decoded); this module checks what the arrays hold. Nothing is unpickled and nothing is
written to disk.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from explorer.data.dataset import (
    Dataset,
    check_input_shape,
    check_resizable,
    fit_to_shape,
    readonly,
    resize,
    to_channels,
)
from explorer.errors import DatasetError
from explorer.untrusted.archive import member_path, open_member, open_zip
from explorer.untrusted.files import human_size, read_bounded, sniff
from explorer.untrusted.images import decode_image
from explorer.untrusted.npy import load_npy, npy_header


@dataclass(frozen=True)
class Limits:
    """Bounds applied to an upload before it is unpacked or decoded (the zip checks are explorer.untrusted's)."""

    max_images: int = 100_000
    max_side: int = 256  # largest H or W
    max_bytes: int = 512 * 2**20  # total declared uncompressed / decoded bytes
    max_file_bytes: int = 200 * 2**20  # the uploaded file itself


DEFAULT_LIMITS = Limits()

# What a file that is not a dataset turns out to be, and what to do instead.
_NOT_A_DATASET = {
    "empty": "it is empty",
    "npy": "it is a single .npy array; save it with np.savez(path, images=array) instead",
    "png": "it is a single image; put the images in a .zip, one folder per class",
    "jpeg": "it is a single image; put the images in a .zip, one folder per class",
    "gzip": "it is gzip-compressed; only .zip archives are read",
    "pickle": "it is a Python pickle, which is never unpickled here; save the arrays with np.savez",
}


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
    shape = check_input_shape(input_shape)
    if isinstance(source, bytes | bytearray | memoryview):
        label = filename or "upload"
    else:
        label = filename or Path(source).name
    data = read_bounded(source, what="dataset file", label=label, limit=limits.max_file_bytes, error=DatasetError)
    found = sniff(data)
    if found != "zip":
        what = _NOT_A_DATASET.get(found or "", f"its first bytes {data[:4].hex(' ')} are neither .npz nor .zip")
        raise DatasetError(
            f"{label} is not a dataset the explorer can read ({what}). Accepted: a .npz with an 'images' array "
            "(optional 'labels' and 'class_names'), or a .zip of PNG/JPEG images with one folder per class."
        )
    with open_zip(data, label=label, max_unpacked=limits.max_bytes, error=DatasetError) as archive:
        infos = archive.infolist()
        members = sorted(
            ((path, info) for info in infos if (path := member_path(info.filename)) is not None), key=lambda m: m[0]
        )
        if members and all(path[-1].endswith(".npy") for path, _ in members):
            images, labels, class_names = _read_npz(archive, members, label, limits)
            if shape is not None:
                images = fit_to_shape(Dataset(label, images, labels, class_names), shape).images
        else:
            images, labels, class_names = _read_image_zip(archive, members, label, shape, limits)
    return Dataset(label, readonly(images), readonly(labels), class_names)


# --- .npz


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
    flo, fhi = float(images.min()), float(images.max())
    if flo < 0 or fhi > 1:
        raise DatasetError(
            f"{label}: float images must lie in [0, 1], found {flo:.4g}..{fhi:.4g}; "
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
    dtype, shape = npy_header(archive, arrays["images"], label=label, max_bytes=limits.max_bytes)
    if dtype.kind not in "buif":
        raise DatasetError(f"{label}: 'images' has dtype {dtype}; expected uint8, another integer type, bool or float")
    layout = _image_layout(shape, label, limits)
    images = load_npy(archive, arrays["images"], label=label)
    if layout == "nchw":
        images = images.transpose(0, 2, 3, 1)
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    images = np.ascontiguousarray(_as_uint8(images, label))
    n = len(images)

    labels = np.full(n, -1, dtype=np.int64)
    if "labels" in arrays:
        dtype, shape = npy_header(archive, arrays["labels"], label=label, max_bytes=limits.max_bytes)
        if dtype.kind not in "iu" or shape != (n,):
            raise DatasetError(f"{label}: 'labels' must be integers of shape ({n},), found {dtype} {shape}")
        labels = load_npy(archive, arrays["labels"], label=label).astype(np.int64)
        if n and labels.min() < -1:
            raise DatasetError(f"{label}: 'labels' must be >= 0 (or -1 for unknown), found {labels.min()}")
    class_names: list[str] = []
    if "class_names" in arrays:
        dtype, shape = npy_header(archive, arrays["class_names"], label=label, max_bytes=limits.max_bytes)
        if dtype.kind != "U" or len(shape) != 1:
            raise DatasetError(
                f"{label}: 'class_names' must be a 1-D array of strings (np.array(names, dtype=str)), found {dtype} {shape}"
            )
        class_names = [str(s) for s in load_npy(archive, arrays["class_names"], label=label)]
    top = int(labels.max()) if n else -1
    if class_names and top >= len(class_names):
        raise DatasetError(f"{label}: labels go up to {top} but only {len(class_names)} class names are given")
    if not class_names and top >= 0:
        class_names = [str(i) for i in range(top + 1)]
    return images, labels, class_names


# --- .zip of images


def _decode_image(data: bytes, name: str, label: str, limits: Limits, *, single: bool = False) -> np.ndarray:
    """An image of at most 4 * max_side^2 pixels (a 2x larger square than kept, so it can be scaled down)."""
    return decode_image(data, max_pixels=4 * limits.max_side**2, name=name, label=label, single=single)


def _read_image_zip(
    archive: zipfile.ZipFile, members: list, label: str, shape: tuple[int, int, int] | None, limits: Limits
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if not members:
        raise DatasetError(f"{label} holds no image files; expected PNG/JPEG images, one folder per class")
    if len(members) > limits.max_images:
        raise DatasetError(f"{label} holds {len(members)} files; at most {limits.max_images} images are allowed")
    decoded, total = [], 0
    for _, info in members:
        with open_member(archive, info, label=label, error=DatasetError) as f:
            data = f.read()
        image = _decode_image(data, info.filename, label, limits)
        if shape is None and max(image.shape[:2]) > limits.max_side:
            raise DatasetError(
                f"{label}: {info.filename} is {image.shape[0]}x{image.shape[1]}; each side may be at most {limits.max_side} pixels"
            )
        total += image.nbytes
        if total > limits.max_bytes:
            raise DatasetError(f"{label}: the decoded images exceed {human_size(limits.max_bytes)}")
        decoded.append(image)

    channels = shape[0] if shape else (3 if any(im.ndim == 3 for im in decoded) else 1)
    decoded = [to_channels(im[None], channels)[0] for im in decoded]
    if shape is not None:
        for i, ((_, info), im) in enumerate(zip(members, decoded)):
            if im.shape[:2] != shape[1:]:
                check_resizable(im.shape[:2], shape[1:], f"image {info.filename!r} in {label}")
                decoded[i] = resize(im, shape[1:])
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


# --- one image


# A single picture may be a phone photo: larger than a dataset's images, still bounded before decoding
# (at most 4 * max_side^2 = 4.2 million pixels, checked from the header).
IMAGE_LIMITS = Limits(max_images=1, max_side=1024, max_bytes=64 * 2**20, max_file_bytes=20 * 2**20)


def load_user_image(
    data: bytes, *, filename: str = "image", input_shape: tuple[int, int, int], limits: Limits = IMAGE_LIMITS
) -> tuple[np.ndarray, tuple[int, int]]:
    """One uploaded PNG or JPEG in a model's (C, H, W) input: (uint8 (H, W) or (H, W, 3), its original (height, width)).

    The format is decided by content and the pixel count by the header, both before decoding. Colour
    becomes grey (or grey colour) to match C; the centre is cropped to the model's aspect ratio, then resized."""
    shape = check_input_shape(input_shape)
    if shape is None:
        raise DatasetError("an uploaded image needs the model's input shape (C, H, W) to be fitted to")
    c, h, w = shape
    data = read_bounded(data, what="image", label=filename, limit=limits.max_file_bytes, error=DatasetError)
    found = sniff(data)
    if found not in ("png", "jpeg"):
        what = (
            "it is empty" if found == "empty" else f"it is a {found} file" if found else "its content is not an image"
        )
        raise DatasetError(f"{filename} is not a PNG or JPEG image ({what}); drop a .png or .jpg file")
    image = to_channels(_decode_image(data, filename, filename, limits, single=True)[None], c)[0]  # (H0, W0[, 3])
    original = (int(image.shape[0]), int(image.shape[1]))
    # the largest centred window with the model's aspect ratio: nothing is stretched
    oh, ow = original
    ch, cw = (oh, min(ow, round(oh * w / h))) if ow * h >= oh * w else (min(oh, round(ow * h / w)), ow)
    top, left = (oh - ch) // 2, (ow - cw) // 2
    image = image[top : top + ch, left : left + cw]
    if image.shape[:2] != (h, w):
        check_resizable(image.shape[:2], (h, w), filename)
        image = resize(np.ascontiguousarray(image), (h, w))
    return readonly(image), original
