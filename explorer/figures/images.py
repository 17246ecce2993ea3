"""uint8 images -> what a browser shows: RGB grids and strips, PNG bytes, animated GIF bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from explorer.data.dataset import to_rgb
from explorer.errors import ExplorerError

MAX_SCALE = 32
MIN_GIF_DURATION_MS = 20  # browsers show shorter GIF frame delays as 100 ms


class ImageError(ExplorerError):
    """Images of a shape or type that cannot be shown."""


def _check_scale(scale: int) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= MAX_SCALE:
        raise ImageError(f"scale must be an integer between 1 and {MAX_SCALE}, got {scale!r}")
    return int(scale)


def scale_for(height: int, target: int) -> int:
    """The integer upscale that brings images of this height closest to ``target`` pixels (at least 1):
    a 28-pixel digit and a 64-pixel photo then show at about the same size."""
    return max(1, min(MAX_SCALE, round(target / max(1, int(height)))))


def _upscale(images: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale of (N, H, W, ...) by an integer factor: each pixel becomes a scale x scale block."""
    if scale == 1:
        return images
    return images.repeat(scale, axis=1).repeat(scale, axis=2)


def grid(images: np.ndarray, cols: int, pad: int = 2, pad_value: int = 255, scale: int = 1) -> np.ndarray:
    """Tile N images into rows of ``cols`` (left to right, top to bottom): (H', W', 3) uint8.

    Each tile is upscaled by ``scale`` first; ``pad`` pixels of ``pad_value`` go between tiles
    (not around the border) and fill the empty cells of the last row. ``cols`` is capped at N,
    so H' = rows * H * scale + (rows - 1) * pad with rows = ceil(N / cols), and likewise W'.
    """
    tiles = _upscale(to_rgb(images), _check_scale(scale))  # (N, h, w, 3)
    n, h, w, _ = tiles.shape
    if n == 0:
        raise ImageError("grid needs at least one image")
    if isinstance(cols, bool) or not isinstance(cols, (int, np.integer)) or cols < 1:
        raise ImageError(f"cols must be a positive integer, got {cols!r}")
    if not 0 <= pad <= 64 or not 0 <= pad_value <= 255:
        raise ImageError(f"pad must be in [0, 64] and pad_value in [0, 255], got {pad} and {pad_value}")
    cols = min(int(cols), n)
    rows = -(-n // cols)  # ceil division
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, 3), pad_value, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * (h + pad), c * (w + pad)
        out[y : y + h, x : x + w] = tiles[i]
    return out


def strip(images: np.ndarray, pad: int = 2, scale: int = 1) -> np.ndarray:
    """All images side by side in one row: (H * scale, W', 3) uint8."""
    return grid(images, cols=max(1, len(images)), pad=pad, scale=scale)


def png_bytes(array: np.ndarray, *, fast: bool = False) -> bytes:
    """PNG file bytes of one uint8 image (H, W), (H, W, 1) or (H, W, 3). ``fast``: the lightest compression,
    for small images sent at once (a few percent larger, several times quicker to make)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise ImageError(f"png_bytes needs one uint8 image (H, W) or (H, W, 3), got {array.dtype} {array.shape}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    buf = io.BytesIO()
    # uint8 (H, W) -> "L", (H, W, 3) -> "RGB"
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=1 if fast else 6)
    return buf.getvalue()


def gif_bytes(
    frames: np.ndarray, *, scale: int = 4, duration_ms: int = 80, loop: bool = True, bounce: bool = True
) -> bytes:
    """Animated GIF bytes of frames (N, H, W) or (N, H, W, 3) uint8, each upscaled by ``scale``.

    ``bounce`` plays forward then backward without repeating the end frames (2N - 2 frames for N >= 2).
    ``loop`` repeats forever; otherwise it plays once. Every frame is a full opaque image
    drawn over the last (disposal 1), and palettes are not "optimised", so any decoder
    shows the frames as given. PIL merges identical consecutive frames into one longer frame.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or len(frames) == 0:
        raise ImageError(f"gif_bytes needs uint8 frames (N, H, W) or (N, H, W, 3) with N >= 1, got {frames.shape}")
    if frames.ndim == 4 and frames.shape[3] == 1:
        frames = frames[..., 0]
    gray = frames.ndim == 3
    frames = _upscale(frames if gray else to_rgb(frames), _check_scale(scale))
    if bounce:
        frames = np.concatenate([frames, frames[-2:0:-1]])  # forward, then back without repeating the ends
    # grayscale stays "L" (an exact 256-grey palette); RGB is quantised per frame by PIL
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]  # (H, W) -> "L", (H, W, 3) -> "RGB"
    buf = io.BytesIO()
    options = {"loop": 0} if loop else {}
    images[0].save(
        buf,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(MIN_GIF_DURATION_MS, int(duration_ms)),
        disposal=1,
        optimize=False,
        **options,
    )
    return buf.getvalue()


def captioned_grid(images: np.ndarray, captions: list[str], cols: int, *, scale: int = 2, pad: int = 4) -> np.ndarray:
    """Tiles with a line of text under each, on white: (H', W', 3) uint8. Used for per-image errors."""
    tiles = _upscale(to_rgb(np.asarray(images)), _check_scale(scale))
    n, h, w, _ = tiles.shape
    if len(captions) != n:
        raise ImageError(f"{n} images but {len(captions)} captions")
    cols = max(1, min(int(cols), n))
    rows = -(-n // cols)
    text_h = 14
    canvas = Image.new("RGB", (cols * (w + pad) - pad, rows * (h + text_h + pad) - pad), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        x, y = (i % cols) * (w + pad), (i // cols) * (h + text_h + pad)
        canvas.paste(Image.fromarray(tile), (x, y))
        draw.text((x + 1, y + h + 1), caption, fill=(40, 40, 40), font=font)
    return np.asarray(canvas)


SPRITE_CELLS = 1024  # thumbnails per sprite sheet: a 32 x 32 grid
SPRITE_SIDE = 32  # thumbnails larger than this are shrunk to fit (hover previews, not close-ups)


@dataclass(frozen=True)
class SpriteSheets:
    """Thumbnails of every mapped image, packed into PNG sheets a page can fetch once and cut from.

    Image ``i`` is cell ``i % per_sheet`` of sheet ``i // per_sheet``, at column ``cell % cols`` and row
    ``cell // cols``; every cell is ``cell_h`` x ``cell_w`` pixels."""

    sheets: tuple[bytes, ...]
    per_sheet: int
    cols: int
    cell_h: int
    cell_w: int
    count: int = 0  # images in all

    @property
    def nbytes(self) -> int:
        return sum(len(s) for s in self.sheets)


def sprite_sheets(images: np.ndarray, *, per_sheet: int = SPRITE_CELLS, side: int = SPRITE_SIDE) -> SpriteSheets:
    """uint8 images (N, H, W[, C]) -> PNG sprite sheets (see ``SpriteSheets``). Images larger than ``side`` are
    shrunk by an integer factor (block means), so a 28-pixel digit keeps every pixel and a 64-pixel photo
    travels at 32."""

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or not len(images):
        raise ImageError(f"sprite sheets need uint8 images (N, H, W[, C]), got {images.dtype} {images.shape}")
    if images.ndim == 4 and images.shape[3] == 1:
        images = images[..., 0]
    n, h, w = images.shape[:3]
    f = max(1, -(-max(h, w) // side))  # integer shrink factor
    cols = int(np.ceil(np.sqrt(per_sheet)))
    ch, cw = h // f, w // f
    sheets = []
    for start in range(0, n, per_sheet):
        block = images[start : start + per_sheet]
        if f > 1:  # block means over f x f pixels
            block = block[:, : ch * f, : cw * f].reshape(len(block), ch, f, cw, f, *block.shape[3:]).mean(axis=(2, 4))
            block = block.round().astype(np.uint8)
        rows = -(-len(block) // cols)
        canvas = np.zeros((rows * cols, ch, cw, *block.shape[3:]), np.uint8)
        canvas[: len(block)] = block
        # (rows, cols, ch, cw[, 3]) -> (rows * ch, cols * cw[, 3])
        canvas = canvas.reshape(rows, cols, ch, cw, *block.shape[3:]).swapaxes(1, 2)
        sheets.append(png_bytes(canvas.reshape(rows * ch, cols * cw, *block.shape[3:]), fast=True))
    return SpriteSheets(tuple(sheets), per_sheet, cols, ch, cw, n)


def labelled_rows(images: np.ndarray, labels: list[str], cols: int, *, scale: int = 2, pad: int = 2) -> np.ndarray:
    """Rows of ``cols`` tiles, each row with its label on the left, on white: (H', W', 3) uint8. For traversal
    grids, where a row is one latent dimension and the label says which."""
    rows = len(labels)
    if len(images) != rows * cols:
        raise ImageError(f"{len(images)} images do not make {rows} rows of {cols}")
    body = grid(images, cols=cols, pad=pad, scale=_check_scale(scale))  # (H', W', 3)
    tile_h = images.shape[1] * scale
    font = ImageFont.load_default()
    text_w = max(int(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(label, font=font)) for label in labels) + 8
    canvas = Image.new("RGB", (text_w + body.shape[1], body.shape[0]), "white")
    canvas.paste(Image.fromarray(body), (text_w, 0))
    draw = ImageDraw.Draw(canvas)
    for r, label in enumerate(labels):
        draw.text((2, r * (tile_h + pad) + tile_h // 2 - 6), label, fill=(40, 40, 40), font=font)
    return np.asarray(canvas)
