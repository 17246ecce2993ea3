"""The ``Dataset`` every loader returns, and conversions to the (C, H, W) a model takes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from explorer.errors import DatasetError

MAX_UPSCALE = 4.0
MAX_STRETCH = 4 / 3  # a 4:3 image may be squeezed to a square; anything flatter is refused


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
        return Dataset(self.name, readonly(self.images[index]), readonly(self.labels[index]), list(self.class_names))


def readonly(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    array.setflags(write=False)
    return array


def to_rgb(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W), (N, H, W, 1) or (N, H, W, 3) -> (N, H, W, 3) uint8."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DatasetError(f"images must be uint8, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]  # (N, H, W, 1)
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise DatasetError(f"images must be (N, H, W), (N, H, W, 1) or (N, H, W, 3), got {images.shape}")
    if images.shape[3] == 1:
        return np.repeat(images, 3, axis=3)
    return images


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, C) -> float32 (N, C, H, W) in [0, 1]."""
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DatasetError(f"to_float needs uint8 images (N, H, W) or (N, H, W, C), got {images.dtype} {images.shape}")
    x = images.astype(np.float32)
    x /= 255.0  # division, not * (1/255): 255 must map to exactly 1.0
    return x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, 3) -> (N, H, W) when ``channels`` is 1, (N, H, W, 3) when 3."""
    if channels == 3 and images.ndim == 3:
        return np.repeat(images[..., None], 3, axis=3)
    if channels == 1 and images.ndim == 4:
        luma = images @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601, as PIL's convert("L")
        return np.rint(np.clip(luma, 0, 255)).astype(np.uint8)
    return images


def check_input_shape(input_shape: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
    if input_shape is None:
        return None
    try:
        c, h, w = (int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise DatasetError(f"input_shape must be (channels, height, width), got {input_shape!r}") from None
    if c not in (1, 3) or h < 1 or w < 1:
        raise DatasetError(f"input_shape must have 1 or 3 channels and positive sizes, got {input_shape!r}")
    return c, h, w


def check_resizable(found: tuple[int, int], need: tuple[int, int], what: str) -> None:
    (fh, fw), (h, w) = found, need
    upscale = max(h / fh, w / fw)
    if upscale > MAX_UPSCALE:
        raise DatasetError(
            f"{what}: {fh}x{fw} (height x width) found but the model needs {h}x{w}, "
            f"a {upscale:.1f}x enlargement, more than the {MAX_UPSCALE:g}x allowed. "
            f"Use images of at least {math.ceil(h / MAX_UPSCALE)}x{math.ceil(w / MAX_UPSCALE)} pixels."
        )
    stretch = (fw / fh) / (w / h)
    if max(stretch, 1 / stretch) > MAX_STRETCH * (1 + 1e-9):
        raise DatasetError(
            f"{what}: {fh}x{fw} (height x width, aspect {fw / fh:.2f}) found "
            f"but the model needs {h}x{w} (aspect {w / h:.2f}); resizing would distort them. "
            "Crop or pad them to the model's aspect ratio first."
        )


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def fit_to_shape(dataset: Dataset, input_shape: tuple[int, int, int]) -> Dataset:
    """``dataset`` with its images converted to the channels and size of a model's (C, H, W) input."""
    c, h, w = check_input_shape(input_shape)  # type: ignore[misc]
    if dataset.shape == (c, h, w):
        return dataset
    images = to_channels(dataset.images, c)
    if images.shape[1:3] != (h, w):
        check_resizable(images.shape[1:3], (h, w), f"the images of {dataset.name}")
        images = np.stack([resize(im, (h, w)) for im in images])
    return Dataset(dataset.name, readonly(images), dataset.labels, list(dataset.class_names))


def fit_image(image: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """One uint8 (H, W) or (H, W, 3) image in the channels and size of a model's (C, H, W) input, as
    ``fit_to_shape`` fits a whole dataset, for sources whose images differ in size: an image whose aspect is
    further from the model's than ``MAX_STRETCH`` is centre-cropped to it first (a dataset's photos are not
    all one shape), and one that would need more than ``MAX_UPSCALE`` enlargement raises DatasetError."""
    c, h, w = input_shape
    image = to_channels(image[None], c)[0]
    fh, fw = image.shape[:2]
    if (fh, fw) == (h, w):
        return image
    stretch = (fw / fh) / (w / h)
    if stretch > MAX_STRETCH:  # too wide: keep the middle columns
        keep = max(1, round(fh * w / h))
        image = image[:, (fw - keep) // 2 : (fw - keep) // 2 + keep]
    elif 1 / stretch > MAX_STRETCH:  # too tall: keep the middle rows
        keep = max(1, round(fw * h / w))
        image = image[(fh - keep) // 2 : (fh - keep) // 2 + keep]
    fh, fw = image.shape[:2]
    if max(h / fh, w / fw) > MAX_UPSCALE:
        raise DatasetError(f"{fh}x{fw} pixels, too small for {h}x{w} (more than {MAX_UPSCALE:g}x enlargement)")
    return resize(np.ascontiguousarray(image), (h, w))
