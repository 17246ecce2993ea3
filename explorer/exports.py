"""What a map can be taken away as: tables, a standalone interactive map, an Embedding Projector bundle, pictures.

Pure functions from arrays (a ``MapData`` and uint8 images) to file bytes; the Export page only calls
them when a download button is clicked. Rows are the mapped images in map order, so ``index`` is the
number the app's "Go to" and the map's hover show.

- ``csv_bytes`` / ``parquet_bytes``: one row per image: index, map coordinates, label, class name,
  reconstruction error, the model's per-image statistics, then every latent coordinate.
- ``map_html``: the map as one HTML file with plotly.js inside (about 4.8 MB of it), so it opens
  offline, with zoom, hover and legend filters.
- ``projector_zip``: the TensorFlow Embedding Projector's files: ``vectors.tsv`` (N rows of L
  tab-separated numbers, no header), ``metadata.tsv`` (a header and N rows), ``sprite.png`` (every
  image on one square grid, at most 8192 pixels a side, the Projector's limit: thumbnails shrink to
  fit, so 70,000 64-pixel images become 30-pixel tiles of a 7950-pixel sprite) and
  ``projector_config.json`` naming them.
- ``selection_png``: the selected images beside their reconstructions; the mosaic has its own
  ``Mosaic.png`` (explorer.mosaic).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from explorer import images as imaging
from explorer.errors import ExplorerError

if TYPE_CHECKING:
    import pyarrow as pa

    from explorer.workspace import MapData

MAX_SPRITE_SIDE = 8192  # pixels: the Embedding Projector refuses larger sprites (WebGL texture size)
MIN_THUMB = 4  # pixels: below this a thumbnail shows nothing; reached only past a million images
MAX_SELECTION_IMAGES = 256  # a selection picture shows the first this many images (by index)
PROJECTOR_FILES = ("vectors.tsv", "metadata.tsv", "sprite.png", "projector_config.json", "README.txt")


class ExportError(ExplorerError):
    """Data that cannot be written in the asked format."""


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class MapTable:
    """The per-image numbers of one map, in map order."""

    embedding: np.ndarray  # (N, 2) or (N, 3) map coordinates
    latents: np.ndarray  # (N, L)
    labels: np.ndarray  # (N,) int; -1 for unlabelled
    class_names: list[str]
    recon_error: np.ndarray  # (N,)
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # the model's per-image statistics, each (N,)

    def __post_init__(self) -> None:
        n = len(self.embedding)
        sizes = {"latents": len(self.latents), "labels": len(self.labels), "recon_error": len(self.recon_error)}
        sizes |= {f"statistic {k}": len(v) for k, v in self.stats.items()}
        if any(size != n for size in sizes.values()):
            raise ExportError(f"every column needs one value per mapped image ({n}); got {sizes}")
        if self.latents.ndim != 2 or self.embedding.ndim != 2 or self.embedding.shape[1] not in (2, 3):
            raise ExportError(
                f"latents must be (N, L) and the map (N, 2|3); got {self.latents.shape}, {self.embedding.shape}"
            )

    @classmethod
    def from_map(cls, md: MapData) -> MapTable:
        enc = md.encoded
        return cls(
            md.projection.embedding, enc.latents, md.labels, list(md.class_names), enc.recon_error, dict(enc.stats)
        )

    def __len__(self) -> int:
        return len(self.embedding)

    def class_of(self) -> list[str]:
        names = self.class_names
        return [names[lab] if 0 <= lab < len(names) else "" for lab in self.labels.tolist()]

    def columns(self) -> dict[str, np.ndarray | list[str]]:
        """Column name -> values, in the order the files list them."""
        out: dict[str, np.ndarray | list[str]] = {"index": np.arange(len(self), dtype=np.int64)}
        for axis, name in enumerate(("map_x", "map_y", "map_z")[: self.embedding.shape[1]]):
            out[name] = np.asarray(self.embedding[:, axis], dtype=np.float32)
        out["label"] = np.asarray(self.labels, dtype=np.int64)
        out["class"] = self.class_of()
        out["recon_error"] = np.asarray(self.recon_error, dtype=np.float32)
        for name, values in self.stats.items():
            out[name if name not in out else f"stat_{name}"] = np.asarray(values, dtype=np.float32)
        latents = np.asarray(self.latents, dtype=np.float32)
        for d in range(latents.shape[1]):
            out[f"latent_{d}"] = latents[:, d]
        return out


def _arrow(table: MapTable) -> pa.Table:
    import pyarrow as pa

    return pa.table(table.columns())


def csv_bytes(table: MapTable) -> bytes:
    """A header row and one row per image (pyarrow's writer: 10,000 x 1,000 columns in about a second)."""
    import pyarrow.csv as pacsv

    buf = io.BytesIO()
    pacsv.write_csv(_arrow(table), buf)
    return buf.getvalue()


def parquet_bytes(table: MapTable) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(_arrow(table), buf, compression="zstd")
    return buf.getvalue()


def map_html(figure: dict, *, title: str) -> bytes:
    """The map figure as one self-contained HTML page (plotly.js inline: it works without a network).

    In the app a drag selects images; in the file it zooms, which is what a reader of a saved map wants."""
    import plotly.io as pio

    layout = dict(figure.get("layout", {}))
    layout.pop("images", None)  # a mosaic picture belongs to the live app; it would double the file
    layout.update(
        title={"text": title, "font": {"size": 15}},
        height=None,  # fill the browser window instead of the app's column
        autosize=True,
        margin={**layout.get("margin", {}), "t": 50},
    )
    if layout.get("dragmode") in ("select", "pan", "lasso"):
        layout["dragmode"] = "zoom"
    html = pio.to_html(
        {"data": figure["data"], "layout": layout},
        include_plotlyjs=True,
        full_html=True,
        default_width="100%",
        default_height="100vh",
        config={"displaylogo": False, "responsive": True, "scrollZoom": True},
    )
    # the page's own title, so a browser tab shows what the map is of; the charset first, since titles and class
    # names may be any text (plotly.py writes the declaration in recent versions only)
    head = f"<title>{_escape_html(title)}</title>"
    if "charset" not in html[: html.find("</head>")]:
        head = '<meta charset="utf-8" />' + head
    html = html.replace("<head>", "<head>" + head, 1)
    return html.encode("utf-8")


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ------------------------------------------------------------------------------------ Embedding Projector


def _tsv_field(text: str) -> str:
    """One TSV cell: the Projector splits on tabs and newlines and has no quoting, so those become spaces."""
    return " ".join(str(text).replace("\t", " ").replace("\r", " ").replace("\n", " ").split()) or "-"


def vectors_tsv(latents: np.ndarray) -> bytes:
    """N lines of L tab-separated numbers, no header (the Projector's tensor file)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    latents = np.asarray(latents, dtype=np.float32)
    cols = {str(d): latents[:, d] for d in range(latents.shape[1])}
    buf = io.BytesIO()
    options = pacsv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    pacsv.write_csv(pa.table(cols), buf, options)
    return buf.getvalue()


def metadata_tsv(table: MapTable) -> bytes:
    """A header (index, label, class, recon_error) and one line per image; with more than one column the Projector
    reads the first line as the header."""
    lines = ["index\tlabel\tclass\trecon_error"]
    classes = table.class_of()
    for i, (lab, err) in enumerate(zip(table.labels.tolist(), table.recon_error.tolist())):
        lines.append(f"{i}\t{lab}\t{_tsv_field(classes[i])}\t{err:.6g}")
    return ("\n".join(lines) + "\n").encode("utf-8")


@dataclass(frozen=True)
class Sprite:
    png: bytes
    thumb: tuple[int, int]  # (width, height) of one tile: the Projector's singleImageDim
    per_row: int  # tiles per row and per column


def sprite(pictures: np.ndarray, *, max_side: int = MAX_SPRITE_SIDE) -> Sprite:
    """Every image on one square grid, row by row from the top left, shrunk (never cropped) so the whole picture
    fits ``max_side`` pixels a side; cells past the last image stay white."""
    from PIL import Image

    tiles = imaging.to_rgb(np.asarray(pictures)) if np.asarray(pictures).ndim == 4 else np.asarray(pictures)
    if tiles.dtype != np.uint8 or tiles.ndim not in (3, 4) or len(tiles) == 0:
        raise ExportError(f"a sprite needs uint8 images (N, H, W) or (N, H, W, 3), got {tiles.dtype} {tiles.shape}")
    n, h, w = tiles.shape[:3]
    per_row = math.ceil(math.sqrt(n))
    shrink = min(1.0, max_side / (per_row * max(h, w)))
    th, tw = max(1, math.floor(h * shrink)), max(1, math.floor(w * shrink))
    if min(th, tw) < MIN_THUMB:
        raise ExportError(
            f"{n:,} images do not fit one {max_side}-pixel sprite with tiles of at least {MIN_THUMB} pixels; "
            "map fewer images"
        )
    if (th, tw) != (h, w):
        # box filter: each tile pixel is the mean of the pixels it covers, so thin strokes fade rather than vanish
        tiles = np.stack([np.asarray(Image.fromarray(t).resize((tw, th), Image.Resampling.BOX)) for t in tiles])
    channels = tiles.shape[3:]  # () for grey, (3,) for colour
    cells = np.full((per_row * per_row, th, tw, *channels), 255, np.uint8)
    cells[:n] = tiles
    # (rows, cols, th, tw[, 3]) -> (rows, th, cols, tw[, 3]) -> one picture
    picture = cells.reshape(per_row, per_row, th, tw, *channels).swapaxes(1, 2)
    picture = picture.reshape(per_row * th, per_row * tw, *channels)
    return Sprite(imaging.png_bytes(picture), (tw, th), per_row)


def projector_files(table: MapTable, pictures: np.ndarray, *, name: str) -> dict[str, bytes]:
    """The Embedding Projector's files for ``table`` (its latents) and ``pictures`` (the mapped images, map order)."""
    if len(pictures) != len(table):
        raise ExportError(f"{len(pictures)} images for {len(table)} mapped points: they must be the same images")
    art = sprite(pictures)
    n, dims = np.asarray(table.latents).shape
    config = {
        "embeddings": [
            {
                "tensorName": name,
                "tensorShape": [n, dims],
                "tensorPath": "vectors.tsv",
                "metadataPath": "metadata.tsv",
                "sprite": {"imagePath": "sprite.png", "singleImageDim": list(art.thumb)},
            }
        ]
    }
    readme = (
        f"{name}: {n:,} images, {dims} latent dimensions, exported by the latent space explorer.\n\n"
        "vectors.tsv            one line per image, its latent coordinates separated by tabs\n"
        "metadata.tsv           index, label, class, reconstruction error (first line: the header)\n"
        f"sprite.png             every image on a {art.per_row} x {art.per_row} grid of "
        f"{art.thumb[0]} x {art.thumb[1]} pixel tiles, row by row\n"
        "projector_config.json  names the three files above\n\n"
        "In the Embedding Projector, 'Load' takes vectors.tsv and metadata.tsv. The sprite is read through\n"
        "projector_config.json when the four files are served from one folder (its URL in ?config=...).\n"
    )
    return {
        "vectors.tsv": vectors_tsv(table.latents),
        "metadata.tsv": metadata_tsv(table),
        "sprite.png": art.png,
        "projector_config.json": json.dumps(config, indent=2).encode("utf-8"),
        "README.txt": readme.encode("utf-8"),
    }


def projector_zip(table: MapTable, pictures: np.ndarray, *, name: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for filename, data in projector_files(table, pictures, name=name).items():
            # the sprite is a PNG already: deflating it again costs time and saves nothing
            kind = zipfile.ZIP_STORED if filename.endswith(".png") else zipfile.ZIP_DEFLATED
            archive.writestr(filename, data, compress_type=kind)
    return buf.getvalue()


# ------------------------------------------------------------------------------------------ pictures


def selection_png(originals: np.ndarray, reconstructions: np.ndarray, *, cols: int = 8) -> bytes:
    """Each image beside its reconstruction, ``cols`` pairs a row, upscaled to about 56 pixels high."""
    originals, reconstructions = np.asarray(originals), np.asarray(reconstructions)
    if originals.shape != reconstructions.shape or len(originals) == 0:
        raise ExportError(
            f"need as many reconstructions as images, of one shape; got {originals.shape} and {reconstructions.shape}"
        )
    pairs = np.concatenate([originals, reconstructions], axis=2)  # (N, H, 2W[, 3]): original | reconstruction
    scale = imaging.scale_for(originals.shape[1], 56)
    return imaging.png_bytes(imaging.grid(pairs, cols=cols, pad=4, scale=scale))


def file_stem(*parts: Any) -> str:
    """A file name stem from words (checkpoint, dataset, ...): letters, digits, dots and dashes only."""
    text = "-".join(str(p) for p in parts if str(p))
    clean = "".join(c if c.isascii() and (c.isalnum() or c in ".-_") else "-" for c in text)
    return "-".join(filter(None, clean.split("-")))[:120] or "export"
