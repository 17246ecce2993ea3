"""The decoded map: a regular grid of cells over a 2-D map, each decoded from the latent its centre maps back to.

The classic picture of a VAE's 2-D latent plane, for a map of any latent size: cell centres go
back to latent space through ``Projection.inverse`` and through the decoder. The
tiles are laid out as the map is drawn (row 0 at the top, the highest y), so the picture can lie
under the scatter as a Plotly layout image stretched over the same extent. Cells far from the
data (``Projection.inverse``'s ``far`` above :data:`FAR`) decode what no training image looked
like; they are faded and carry a red corner.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from explorer.data.dataset import to_rgb
from explorer.maps import ops
from explorer.maps.ops import LatentError
from explorer.maps.projection import Projection

MIN_CELLS, MAX_CELLS = 12, 30
FAR = 5.0  # typical spacings to the nearest mapped point beyond which a cell is "far from data"
MARGIN = 0.03  # default extent: the embedding's bounds widened by this fraction of their span on each side
FADE = 0.35  # far cells keep this fraction of their contrast against white (the map's background)
MARK = (214, 39, 40)  # the palette's red
# compress_level 1: on a 20 x 20 Fashion-MNIST mosaic (600 x 600 RGB) 3x faster to encode than PIL's default 6
# for a file 3% larger (level 3: 10% smaller than 1, 1.5x slower); docs/BENCHMARKS.md, "Decoded mosaic"
PNG_LEVEL = 1
# 900 latents through the default checkpoint's conv decoder, one torch thread: 63 ms in batches of 64,
# 178 ms in one batch (a batch's activations stop fitting in the CPU caches)
DECODE_BATCH = 64


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class Mosaic:
    """Decoded cells of a ``rows x cols`` grid; every per-cell array is indexed [row, col], row 0 at the top."""

    images: np.ndarray  # (rows, cols, H, W) or (rows, cols, H, W, 3) uint8
    centres: np.ndarray  # (rows, cols, 2) float32 map coordinates
    far: np.ndarray  # (rows, cols) float32, distance to the nearest mapped point in typical spacings
    extent: tuple[float, float, float, float]  # x0, x1, y0, y1

    @property
    def far_from_data(self) -> np.ndarray:
        """(rows, cols) bool: the cells that get marked."""
        return self.far > FAR

    def image(self, gap: int = 2) -> np.ndarray:
        """All cells as one uint8 RGB picture (rows * (H + gap), cols * (W + gap), 3) on white.

        Each cell takes an equal block with its tile centred in it, so every tile sits over its own
        cell of the extent when the picture is stretched over it; far cells are faded and marked.
        """
        if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or not 0 <= gap <= 16:
            raise LatentError(f"gap must be an integer between 0 and 16 pixels, got {gap!r}")
        rows, cols, h, w = self.images.shape[:4]
        tiles = to_rgb(self.images.reshape(rows * cols, h, w, -1)).reshape(rows, cols, h, w, 3)
        far = self.far_from_data
        if far.any():
            tiles = tiles.copy()  # to_rgb hands colour images back as a view of self.images
            faded = 255.0 - (255.0 - tiles[far].astype(np.float32)) * FADE  # (F, H, W, 3)
            s = max(3, min(h, w) // 5)  # the corner mark's legs, in pixels
            yy, xx = np.mgrid[:h, :w]
            corner = (w - 1 - xx) + yy < s  # (H, W): a right triangle in the top-right corner
            faded[:, corner] = MARK
            tiles[far] = faded.round().astype(np.uint8)
        lo = gap // 2
        out = np.full((rows, h + gap, cols, w + gap, 3), 255, np.uint8)
        out[:, lo : lo + h, :, lo : lo + w] = tiles.transpose(0, 2, 1, 3, 4)  # (rows, H, cols, W, 3)
        return out.reshape(rows * (h + gap), cols * (w + gap), 3)

    def png(self, gap: int = 2) -> bytes:
        """PNG file bytes of :meth:`image`."""
        buf = io.BytesIO()
        Image.fromarray(self.image(gap)).save(buf, format="PNG", compress_level=PNG_LEVEL)
        return buf.getvalue()

    def layout_image(self, *, gap: int = 2, opacity: float = 0.9) -> dict:
        """A Plotly ``layout.images`` entry that stretches the picture over the extent, under the markers."""
        x0, x1, y0, y1 = self.extent
        return {
            "source": "data:image/png;base64," + base64.b64encode(self.png(gap)).decode("ascii"),
            "xref": "x",
            "yref": "y",
            "x": x0,
            "y": y1,  # anchored at its top-left corner: row 0 is the highest y
            "sizex": x1 - x0,
            "sizey": y1 - y0,
            "xanchor": "left",
            "yanchor": "top",
            "sizing": "stretch",
            "layer": "below",
            "opacity": float(opacity),
        }


def default_extent(projection: Projection) -> tuple[float, float, float, float]:
    """The embedding's bounds, widened by :data:`MARGIN` of their span on each side."""
    lo, hi = projection.embedding[:, :2].min(0), projection.embedding[:, :2].max(0)
    pad = MARGIN * np.maximum(hi - lo, 1e-6)  # a degenerate map still gets an extent of positive size
    return float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1])


def _check(projection: Projection, extent: tuple[float, float, float, float] | None, cells: int):
    dims = projection.embedding.shape[1]
    if dims != 2:
        raise LatentError(f"the decoded mosaic lies under a 2-D map; this map is {dims}-D")
    if isinstance(cells, bool) or not isinstance(cells, (int, np.integer)) or not MIN_CELLS <= cells <= MAX_CELLS:
        raise LatentError(f"the mosaic has between {MIN_CELLS} and {MAX_CELLS} cells a side, got {cells!r}")
    if extent is None:
        return default_extent(projection)
    x0, x1, y0, y1 = (float(v) for v in extent)
    if not (np.isfinite([x0, x1, y0, y1]).all() and x1 > x0 and y1 > y0):
        raise LatentError(f"the mosaic's extent must be finite with x0 < x1 and y0 < y1, got {tuple(extent)}")
    return x0, x1, y0, y1


def decoded_grid(
    model, projection: Projection, *, extent: tuple[float, float, float, float] | None = None, cells: int = 20
) -> Mosaic:
    """Decode a ``cells x cells`` grid over ``extent`` (x0, x1, y0, y1; default: the map's bounds plus a margin)."""
    x0, x1, y0, y1 = _check(projection, extent, cells)
    n = int(cells)
    xs = x0 + (np.arange(n) + 0.5) * (x1 - x0) / n  # (n,) left to right
    ys = y1 - (np.arange(n) + 0.5) * (y1 - y0) / n  # (n,) top to bottom
    centres = np.stack(np.meshgrid(xs, ys), axis=-1).astype(np.float32)  # (n, n, 2), [row, col]
    z, far = projection.inverse(centres.reshape(-1, 2))  # (n * n, L), (n * n,)
    images = ops.decode(model, z, batch_size=DECODE_BATCH)  # (n * n, H, W[, 3])
    return Mosaic(images.reshape(n, n, *images.shape[1:]), centres, far.reshape(n, n), (x0, x1, y0, y1))
