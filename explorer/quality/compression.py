"""Probing a model with edited images: edits (noise, occlusion, shift), PSNR, and what a latent code costs.

Images cross this module as batches, uint8 or float in [0, 1], (N, H, W) grey or (N, H, W, 3) colour, the
layout every dataset here uses; each edit returns the dtype and shape it was given. Every random edit
takes a seed and its own generator, so a page shows the same noisy image on every rerun and every
model compared on "the same noise" really sees the same pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from explorer.data import to_float
from explorer.errors import ExplorerError
from explorer.maps.encode import encode as encode_images

if TYPE_CHECKING:  # torch (2.5 s to import) loads only when a model is used, not when a page module is imported
    from explorer.models.base import Autoencoder

FLOAT16_BYTES = 2
FLOAT32_BYTES = 4
MAX_BITS = 8  # quantized codes are stored one uint8 per dimension at most


class ProbeError(ExplorerError):
    """An edit, a PSNR or a compression got images or options it cannot use."""


# ----------------------------------------------------------------------------------- checking and scaling


def _batch(images: np.ndarray, what: str = "images") -> np.ndarray:
    """A checked batch: uint8 anything, or finite floats in [0, 1]; (N, H, W) or (N, H, W, 3)."""
    x = np.asarray(images)
    if not (x.ndim == 3 or (x.ndim == 4 and x.shape[3] == 3)):
        raise ProbeError(f"{what} must be a batch (N, H, W) or (N, H, W, 3), got shape {x.shape}")
    if x.dtype == np.uint8:
        return x
    if x.dtype.kind != "f":
        raise ProbeError(f"{what} must be uint8 or float in [0, 1], got {x.dtype}")
    if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        raise ProbeError(f"float {what} must be finite and lie in [0, 1]")
    return x


def _unit(x: np.ndarray) -> np.ndarray:
    """Pixels as float64 in [0, 1] (uint8 divided by 255)."""
    return x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)


def _like(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """float64 pixels y in [0, 1] back to x's dtype (uint8: rounded to the nearest level)."""
    y = np.clip(y, 0.0, 1.0)
    return np.rint(y * 255.0).astype(np.uint8) if x.dtype == np.uint8 else y.astype(x.dtype)


def _fill(x: np.ndarray, value: float) -> np.uint8 | float:
    """A fill value given in [0, 1] units, in x's dtype."""
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ProbeError(f"fill value must be in [0, 1] (0 black, 1 white), got {value}")
    return np.uint8(round(value * 255)) if x.dtype == np.uint8 else value


def _level(value: float, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ProbeError(f"{name} must be between 0 and 1, got {value}")
    return value


# ----------------------------------------------------------------------------------- edits


def gaussian_noise(images: np.ndarray, *, sigma: float, seed: int = 0) -> np.ndarray:
    """images + N(0, sigma^2) per pixel and channel (sigma in [0, 1] pixel units), clipped to [0, 1].

    The same convention as the DAE's training noise (``explorer.models.dae.corrupt``), drawn with numpy."""
    x = _batch(images)
    sigma = _level(sigma, "noise sigma")
    rng = np.random.default_rng(seed)
    return _like(_unit(x) + sigma * rng.standard_normal(x.shape), x)


def salt_and_pepper(images: np.ndarray, *, rate: float, seed: int = 0) -> np.ndarray:
    """A fraction ``rate`` of the pixels set to black or white (even odds); a colour pixel changes in all channels."""
    x = _batch(images)
    rate = _level(rate, "salt-and-pepper rate")
    rng = np.random.default_rng(seed)
    where = rng.random(x.shape[:3]) < rate  # (N, H, W): which pixels flip
    white = rng.random(x.shape[:3]) < 0.5  # (N, H, W): salt or pepper
    out = x.copy()
    hi, lo = (np.uint8(255), np.uint8(0)) if x.dtype == np.uint8 else (1.0, 0.0)
    out[where & white] = hi  # a colour image's (M, 3) rows take the scalar in every channel
    out[where & ~white] = lo
    return out


def occlude(images: np.ndarray, *, top: int, left: int, size: int, value: float = 0.0) -> np.ndarray:
    """A size x size square from (top, left) painted ``value`` (0 black, 1 white); the part outside the image is dropped."""
    x = _batch(images)
    top, left, size = int(top), int(left), int(size)
    if size < 0:
        raise ProbeError(f"occlusion size must be >= 0, got {size}")
    out = x.copy()
    h, w = x.shape[1:3]
    y0, y1 = max(0, top), min(h, top + size)
    x0, x1 = max(0, left), min(w, left + size)
    if y0 < y1 and x0 < x1:
        out[:, y0:y1, x0:x1] = _fill(x, value)
    return out


def shift(images: np.ndarray, *, dx: int, dy: int, fill: float = 0.0) -> np.ndarray:
    """Content moved dx pixels right and dy down (negative: left, up); uncovered pixels take ``fill``. No wrap-around."""
    x = _batch(images)
    dx, dy = int(dx), int(dy)
    h, w = x.shape[1:3]
    out = np.full_like(x, _fill(x, fill))
    if abs(dx) >= w or abs(dy) >= h:
        return out  # shifted out of the frame entirely
    # out[y, x] = in[y - dy, x - dx] wherever both are inside the frame
    out[:, max(0, dy) : h + min(0, dy), max(0, dx) : w + min(0, dx)] = x[
        :, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)
    ]
    return out


def invert(images: np.ndarray) -> np.ndarray:
    """Negative: black <-> white. Photos are dark on light; MNIST-like data is light on dark."""
    x = _batch(images)
    return (np.uint8(255) - x) if x.dtype == np.uint8 else (1.0 - x).astype(x.dtype)


# noise name -> what its level means
NOISES = {"gaussian": "σ (pixel units)", "salt and pepper": "fraction of pixels flipped"}


def add_noise(images: np.ndarray, *, noise: str, level: float, seed: int = 0) -> np.ndarray:
    """``gaussian`` (level = sigma) or ``salt and pepper`` (level = rate) noise, by name."""
    if noise == "gaussian":
        return gaussian_noise(images, sigma=level, seed=seed)
    if noise == "salt and pepper":
        return salt_and_pepper(images, rate=level, seed=seed)
    raise ProbeError(f"unknown noise {noise!r}; known: {', '.join(NOISES)}")


@dataclass(frozen=True)
class Edits:
    """What the "Your image" page does to an image, in the order applied: invert, shift, occlude, noise.

    Noise comes last so it also covers the patch and the uncovered border, as a noisy sensor would."""

    invert: bool = False
    dx: int = 0
    dy: int = 0
    occlusion: int = 0  # side of the square in pixels; 0: none
    top: int = 0
    left: int = 0
    noise: str = "none"  # "none" or a key of NOISES
    level: float = 0.0
    seed: int = 0

    def apply(self, images: np.ndarray) -> np.ndarray:
        x = _batch(images)
        if self.invert:
            x = invert(x)
        if self.dx or self.dy:
            x = shift(x, dx=self.dx, dy=self.dy)
        if self.occlusion:
            x = occlude(x, top=self.top, left=self.left, size=self.occlusion)
        if self.noise != "none" and self.level > 0:
            x = add_noise(x, noise=self.noise, level=self.level, seed=self.seed)
        return x

    def describe(self) -> str:
        """'inverted, shifted (+2, -1), 8 px square at (10, 10), gaussian noise 0.30' or 'unedited'."""
        parts = ["inverted"] if self.invert else []
        if self.dx or self.dy:
            parts.append(f"shifted ({self.dx:+d}, {self.dy:+d})")
        if self.occlusion:
            parts.append(f"{self.occlusion} px square at ({self.top}, {self.left})")
        if self.noise != "none" and self.level > 0:
            parts.append(f"{self.noise} noise {self.level:.2f}")
        return ", ".join(parts) or "unedited"


# ----------------------------------------------------------------------------------- PSNR


def _pair(reference: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _batch(reference, "reference images"), _batch(other, "compared images")
    if a.shape != b.shape:
        raise ProbeError(f"PSNR compares images of one shape, got {a.shape} and {b.shape}")
    return _unit(a), _unit(b)


def _db(mse: np.ndarray) -> np.ndarray:
    # peak 1 in [0, 1] units: 10 log10(1 / MSE) == 20 log10(255) - 10 log10(MSE in 0..255 units)
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, -10.0 * np.log10(np.maximum(mse, 1e-300)), np.inf)


def psnr(reference: np.ndarray, other: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over the whole batch (one MSE over all pixels); inf when identical.

    uint8 images are compared as pixel / 255, so uint8 and [0, 1] float versions of one image agree."""
    a, b = _pair(reference, other)
    return float(_db(np.asarray(np.mean((a - b) ** 2))))


def psnr_each(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """PSNR in dB of each image pair: (N,) float64, inf where a pair is identical."""
    a, b = _pair(reference, other)
    return _db(((a - b) ** 2).reshape(len(a), -1).mean(axis=1))


def mean_db(values: np.ndarray) -> float:
    """The mean of per-image PSNRs; inf only when every image is reproduced exactly (inf entries otherwise skipped)."""
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    return float(finite.mean()) if finite.size else math.inf


# ----------------------------------------------------------------------------------- encoding


def encode(model: Autoencoder, images: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
    """Codes of uint8 images (N, H, W[, 3]) in the model's layout: (N, L) float32."""
    x = _batch(images)
    if x.dtype != np.uint8:
        raise ProbeError(f"encode takes uint8 images, as datasets hold them; got {x.dtype}")
    shape = to_float(x[:1]).shape[1:]  # (C, H, W)
    if shape != tuple(model.input_shape):
        raise ProbeError(f"images are {shape} (C, H, W) but the model takes {tuple(model.input_shape)}")
    return encode_images(model, x, batch_size=batch_size)


def denoise_curve(
    model: Autoencoder, clean: np.ndarray, *, noise: str, levels: list[float], seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Mean PSNR (dB) against the clean images of (the noisy inputs, the model's reconstructions) at each level: two (T,).

    Level i uses seed + i for every model, so models compared with one seed see identical noisy images."""
    from explorer.maps.ops import reconstruct

    noisy_db, recon_db = [], []
    for i, level in enumerate(levels):
        noisy = add_noise(clean, noise=noise, level=level, seed=seed + i)
        recon, _ = reconstruct(model, noisy)
        noisy_db.append(mean_db(psnr_each(clean, noisy)))
        recon_db.append(mean_db(psnr_each(clean, recon)))
    return np.asarray(noisy_db), np.asarray(recon_db)


# ----------------------------------------------------------------------------------- compression


def latent_range(latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension (min, max) of codes (N, L): the table an 8-bit code is decoded with, (L,) float32 each."""
    z = np.asarray(latents, dtype=np.float32)
    if z.ndim != 2 or len(z) == 0 or not np.isfinite(z).all():
        raise ProbeError(f"latent ranges need finite codes (N >= 1, L), got shape {z.shape}")
    return z.min(axis=0), z.max(axis=0)


def _bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= MAX_BITS:
        raise ProbeError(f"bits must be an integer from 1 to {MAX_BITS}, got {bits!r}")
    return int(bits)


def quantize(z: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, bits: int = 8) -> np.ndarray:
    """Codes (N, L) -> integers 0 .. 2^bits - 1 on each dimension's [lo, hi], uint8 (N, L); values outside are clipped.

    A dimension with lo == hi (constant in the data, e.g. a dead feature) stores 0 and decodes to lo."""
    levels = 2 ** _bits(bits) - 1
    z = np.asarray(z, dtype=np.float64)
    lo64, span = np.asarray(lo, np.float64), np.asarray(hi, np.float64) - np.asarray(lo, np.float64)
    safe = np.where(span > 0, span, 1.0)
    q = np.rint((z - lo64) / safe * levels)
    return np.where(span > 0, np.clip(q, 0, levels), 0).astype(np.uint8)


def dequantize(q: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, bits: int = 8) -> np.ndarray:
    """The codes ``quantize`` stored, back as float32 (N, L): lo + q / (2^bits - 1) * (hi - lo)."""
    levels = 2 ** _bits(bits) - 1
    lo64, hi64 = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    return (lo64 + np.asarray(q, np.float64) / levels * (hi64 - lo64)).astype(np.float32)


def png_size(image: np.ndarray) -> int:
    """Bytes of one uint8 image (H, W) or (H, W, 3) as an optimised PNG (lossless)."""
    x = np.asarray(image)
    if x.dtype != np.uint8 or not (x.ndim == 2 or (x.ndim == 3 and x.shape[2] == 3)):
        raise ProbeError(f"png_size needs one uint8 image (H, W) or (H, W, 3), got {x.dtype} {x.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(x)).save(buf, format="PNG", optimize=True)
    return len(buf.getvalue())


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """One uint8 image (H, W) or (H, W, 3) as a baseline JPEG of ``quality`` (1-100), chroma at full resolution."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="JPEG", quality=int(quality), subsampling=0)
    return buf.getvalue()


def jpeg_payload(data: bytes) -> int:
    """Bytes of a JPEG's entropy-coded image data: the file without its headers and tables (which a store of
    many images would share, as the quantized codes share their range table)."""
    i = 2  # after SOI
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            break
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # start of scan: the coded data follows its header, up to the EOI marker
            return max(0, len(data) - (i + 2 + length) - 2)
        i += 2 + length
    return len(data)


@dataclass(frozen=True)
class JpegMatch:
    """JPEG at the quality that matches, image by image, a target PSNR."""

    file_bytes: float  # mean bytes per image, whole files
    payload_bytes: float  # mean bytes per image of coded data only (tables shared)
    psnr: float  # mean PSNR (dB) of the JPEGs chosen
    quality: float  # mean quality chosen
    short: int  # images no quality reached the target on (kept at quality 100)


def jpeg_at_psnr(images: np.ndarray, targets: np.ndarray) -> JpegMatch:
    """For each uint8 image, the lowest JPEG quality whose PSNR reaches that image's target (dB), by bisection."""
    x = _batch(images)
    files, payloads, scores, qualities, short = [], [], [], [], 0
    for image, target in zip(x, np.asarray(targets, np.float64)):
        lo, hi, best = 1, 100, None
        while lo <= hi:
            q = (lo + hi) // 2
            data = jpeg_bytes(image, q)
            decoded = np.asarray(Image.open(io.BytesIO(data)))
            score = float(_db(np.array([np.mean((_unit(image) - _unit(decoded)) ** 2)]))[0])
            if score >= target:
                best, hi = (q, data, score), q - 1
            else:
                lo = q + 1
        if best is None:  # even quality 100 falls short of the code's PSNR
            short += 1
            data = jpeg_bytes(image, 100)
            decoded = np.asarray(Image.open(io.BytesIO(data)))
            best = (100, data, float(_db(np.array([np.mean((_unit(image) - _unit(decoded)) ** 2)]))[0]))
        q, data, score = best
        files.append(len(data))
        payloads.append(jpeg_payload(data))
        scores.append(score)
        qualities.append(q)
    return JpegMatch(
        float(np.mean(files)), float(np.mean(payloads)), mean_db(np.asarray(scores)), float(np.mean(qualities)), short
    )


@dataclass(frozen=True)
class CodeSizes:
    """Bytes per image of one code in each storage, and of the image itself (raw, uncompressed)."""

    latent_dim: int
    raw: int  # C * H * W uint8 pixels
    float32: int  # 4 L
    float16: int  # 2 L
    quantized: int  # ceil(L * bits / 8)
    table: int  # the shared per-dimension min and max (float32 each): 8 L, paid once for all images
    bits: int = 8

    def quantized_with_table(self, n_images: int) -> float:
        """Per-image bytes of the quantized code when the table is shared by ``n_images`` images."""
        return self.quantized + self.table / max(1, int(n_images))


def code_sizes(latent_dim: int, image_shape: tuple[int, int, int], *, bits: int = 8) -> CodeSizes:
    """Byte counts for a code of ``latent_dim`` numbers against an image of ``image_shape`` (C, H, W)."""
    latent_dim, bits = int(latent_dim), _bits(bits)
    if latent_dim < 1:
        raise ProbeError(f"latent_dim must be >= 1, got {latent_dim}")
    return CodeSizes(
        latent_dim=latent_dim,
        raw=math.prod(int(v) for v in image_shape),
        float32=FLOAT32_BYTES * latent_dim,
        float16=FLOAT16_BYTES * latent_dim,
        quantized=math.ceil(latent_dim * bits / 8),
        table=2 * FLOAT32_BYTES * latent_dim,
        bits=bits,
    )


def sparse_bytes(z: np.ndarray) -> float:
    """Mean bytes per image of sparse codes (N, L) stored as (index, float16 value) pairs of their non-zeros.

    An index needs ceil(log2(L) / 8) bytes (2 for L up to 65,536)."""
    z = np.asarray(z)
    index_bytes = max(1, math.ceil(math.log2(max(2, z.shape[1])) / 8))
    return float(np.count_nonzero(z, axis=1).mean()) * (index_bytes + FLOAT16_BYTES) if len(z) else 0.0


@dataclass
class Compression:
    """One model's codes of some images, stored three ways, decoded, and scored against the originals."""

    sizes: CodeSizes
    n_images: int
    png: float  # mean bytes of the originals as optimised PNG
    psnr: dict[str, float]  # storage name -> mean per-image PSNR (dB) of the decoded images
    examples: dict[str, np.ndarray] = field(default_factory=dict)  # storage name -> uint8 decoded images
    sparse: float | None = None  # mean bytes as (index, float16) pairs, for models with sparse codes
    jpeg: JpegMatch | None = None  # JPEG at each image's PSNR from its quantized code


STORAGES = ("float32", "float16", "quantized")  # the keys of Compression.psnr and .examples


def compression(
    model: Autoencoder,
    images: np.ndarray,
    *,
    lo: np.ndarray,
    hi: np.ndarray,
    bits: int = 8,
    examples: int = 8,
    sparse: bool = False,
    jpeg: bool = True,
) -> Compression:
    """Encode uint8 ``images``, store each code as float32 (reference), float16 and ``bits``-bit integers on the
    per-dimension range [lo, hi] (from the dataset's codes, see ``latent_range``), decode each, and measure PSNR.

    ``examples``: how many decoded images of each storage to keep, for showing. ``sparse``: also count the
    (index, value) storage of a sparse model's codes. ``jpeg``: also find, image by image, the JPEG quality that
    gives the PSNR of its ``bits``-bit code, and what those JPEGs weigh (``jpeg_at_psnr``)."""
    from explorer.maps.ops import decode

    x = _batch(images)
    if x.dtype != np.uint8 or len(x) == 0:
        raise ProbeError("compression needs at least one uint8 image")
    z = encode(model, x)  # (N, L) float32
    codes = {
        "float32": z,
        "float16": z.astype(np.float16).astype(np.float32),  # overflow past 65504 becomes inf: refused by decode
        "quantized": dequantize(quantize(z, lo, hi, bits=bits), lo, hi, bits=bits),
    }
    scores, kept, each = {}, {}, {}
    for name, code in codes.items():
        decoded = decode(model, code)  # uint8 like x
        each[name] = psnr_each(x, decoded)
        scores[name] = mean_db(each[name])
        kept[name] = decoded[:examples]
    c, h, w = (1 if x.ndim == 3 else 3), x.shape[1], x.shape[2]
    return Compression(
        sizes=code_sizes(model.latent_dim, (c, h, w), bits=bits),
        n_images=len(x),
        png=float(np.mean([png_size(im) for im in x])),
        psnr=scores,
        examples=kept,
        sparse=sparse_bytes(z) if sparse else None,
        jpeg=jpeg_at_psnr(x, each["quantized"]) if jpeg else None,
    )
