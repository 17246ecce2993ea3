"""PNG and JPEG images from strangers, decoded into numpy arrays under a pixel bound read from the header.

PIL's own bound (``Image.MAX_IMAGE_PIXELS``) is set here to ``MAX_IMAGE_PIXELS``, far above any image the
explorer keeps, and its ``DecompressionBombWarning`` is turned into a refusal: a header that claims a huge size
is refused before a byte of pixel data is decoded.
"""

from __future__ import annotations

import io
import math
import struct
import warnings

import numpy as np
from PIL import Image

from explorer.errors import DatasetError

FORMATS = ("PNG", "JPEG")
# 16.8 million pixels (4096 x 4096): every caller's own bound is lower; this one holds for any PIL use here.
MAX_IMAGE_PIXELS = 2**24
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def _pixels(img: Image.Image) -> np.ndarray:
    """An opened image whose header passed its bound, decoded: 1/L/LA stay grey, 16/32-bit grey keeps its high
    byte, float grey is clipped; every other mode becomes RGB, and RGB whose channels agree is grey (palette or
    RGB files of a grey set stay single-channel)."""
    img.load()
    if img.mode.startswith("I"):
        return (np.asarray(img).astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8)
    if img.mode == "F":
        return np.rint(np.clip(np.asarray(img), 0, 255)).astype(np.uint8)
    if img.mode in ("1", "L", "LA"):
        return np.asarray(img.convert("L"))
    rgb = np.asarray(img.convert("RGB"))
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return np.ascontiguousarray(rgb[..., 0])
    return rgb


def decode_image(data: bytes, *, max_pixels: int, name: str, label: str, single: bool = False) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 (H, W) when grey, (H, W, 3) when colour.

    ``max_pixels`` bounds width x height, checked from the header before decoding. ``single``: one uploaded
    image called ``label``, not the member ``name`` of the archive ``label``; messages say which.
    """
    what = f"{label} is" if single else f"{label}: {name} is"
    max_pixels = min(max_pixels, MAX_IMAGE_PIXELS)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=FORMATS) as img:
                w, h = img.size  # from the header; nothing is decoded yet
                if w * h > max_pixels:
                    side = math.isqrt(max_pixels)
                    raise DatasetError(
                        f"{what} {h}x{w} pixels; images may have at most {max_pixels} pixels"
                        + (f" (e.g. {side}x{side}); scale it down first" if single else "")
                    )
                return _pixels(img)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DatasetError(
            f"{what} an image whose header claims more than {MAX_IMAGE_PIXELS} pixels; it was refused before "
            "decoding, as a decompression bomb would be. Scale it down first"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:  # UnidentifiedImageError is an OSError
        if single:  # PIL's text names an in-memory buffer here, which helps nobody
            raise DatasetError(
                f"{label} is not a readable PNG or JPEG image: it is damaged or truncated; export it again"
            ) from None
        raise DatasetError(
            f"{label}: member {name!r} is not a readable PNG or JPEG image ({exc}); the .zip may only hold images, "
            "one folder per class"
        ) from None


# What a source on disk may hold (a folder of someone's photos): more formats than uploads take, the same bound.
SOURCE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")


def read_image(
    data: bytes, *, max_pixels: int = MAX_IMAGE_PIXELS, formats: tuple[str, ...] = SOURCE_FORMATS
) -> np.ndarray:
    """Image bytes -> uint8 (H, W) when grey, (H, W, 3) when colour, or DatasetError with a short reason
    ("truncated or damaged", "50000x50000 pixels, more than ...") that a caller puts after the file's name.

    Modes: 1/L/LA and 16-bit grey stay grey (16-bit keeps its high byte); RGB, RGBA (alpha dropped), palette,
    CMYK and the rest become RGB; an RGB image whose channels agree is grey. A GIF gives its first frame."""
    max_pixels = min(max_pixels, MAX_IMAGE_PIXELS)
    if not data:
        raise DatasetError("an empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=formats) as img:
                w, h = img.size  # from the header; nothing is decoded yet
                if w * h > max_pixels:
                    raise DatasetError(f"{w}x{h} pixels, more than the {max_pixels:,} allowed")
                if w < 1 or h < 1:
                    raise DatasetError(f"{w}x{h} pixels")
                return _pixels(img)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DatasetError(
            f"its header claims more than {MAX_IMAGE_PIXELS:,} pixels (refused before decoding)"
        ) from None
    except Image.UnidentifiedImageError:
        raise DatasetError(f"not an image ({', '.join(formats)} are read)") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, MemoryError) as exc:
        raise DatasetError(f"truncated or damaged ({str(exc)[:80] or type(exc).__name__})") from None
