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
  ``Mosaic.png`` (explorer.maps.mosaic).

Every table and map says where it came from (``Provenance``): the checkpoint and its SHA-256, the dataset,
split and image count, the projection and its parameters, and the explorer's version; in the Parquet
schema's metadata, in comment lines above the CSV header, in the HTML page and in the Projector bundle.
"""

from __future__ import annotations

import base64
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from explorer.errors import ExplorerError
from explorer.figures import images as imaging

if TYPE_CHECKING:
    import pyarrow as pa

    from explorer.maps.pipeline import MapData

MAX_SPRITE_SIDE = 8192  # pixels: the Embedding Projector refuses larger sprites (WebGL texture size)
MIN_THUMB = 4  # pixels: below this a thumbnail shows nothing; reached only past a million images
MAX_SELECTION_IMAGES = 256  # a selection picture shows the first this many images (by index)
PROJECTOR_FILES = ("vectors.tsv", "metadata.tsv", "sprite.png", "projector_config.json", "README.txt")


class ExportError(ExplorerError):
    """Data that cannot be written in the asked format."""


def explorer_version() -> str:
    try:
        return version("latent-explorer")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@dataclass(frozen=True)
class Provenance:
    """Where an exported map came from; ``fields()`` is what every file records."""

    checkpoint: str
    checkpoint_sha256: str
    dataset: str  # e.g. "fashion-mnist:test"
    images: int
    projection: dict[str, Any]  # method, dimensions and the parameters that made the layout
    version: str = field(default_factory=explorer_version)

    def fields(self) -> dict[str, Any]:
        name, _, split = self.dataset.partition(":")
        return {
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "dataset": name,
            "split": split or None,
            "images": self.images,
            "projection": self.projection,
            "explorer_version": self.version,
        }

    def json(self) -> str:
        return json.dumps(self.fields(), sort_keys=True)

    def lines(self) -> list[str]:
        """One "key: value" line each, for comments and pages."""
        return [f"{k}: {json.dumps(v) if isinstance(v, dict) else v}" for k, v in self.fields().items()]


@dataclass(frozen=True, eq=False)  # arrays have no single truth value to compare by
class MapTable:
    """The per-image numbers of one map, in map order."""

    embedding: np.ndarray  # (N, 2) or (N, 3) map coordinates
    latents: np.ndarray  # (N, L)
    labels: np.ndarray  # (N,) int; -1 for unlabelled
    class_names: list[str]
    recon_error: np.ndarray  # (N,)
    stats: dict[str, np.ndarray] = field(default_factory=dict)  # the model's per-image statistics, each (N,)
    sigma: np.ndarray | None = None  # (N, L) a VAE's posterior standard deviations, beside the means (latents)
    provenance: Provenance | None = None

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
        if self.sigma is not None and self.sigma.shape != self.latents.shape:
            raise ExportError(f"sigma must be (N, L) like the latents {self.latents.shape}; got {self.sigma.shape}")

    @classmethod
    def from_map(
        cls, md: MapData, *, sigma: np.ndarray | None = None, provenance: Provenance | None = None
    ) -> MapTable:
        enc = md.encoded
        return cls(
            md.projection.embedding, enc.latents, md.labels, list(md.class_names), enc.recon_error, dict(enc.stats),
            sigma, provenance,
        )  # fmt: skip

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
        if self.sigma is not None:  # a VAE: latent_d is the posterior mean, sigma_d its standard deviation
            sigma = np.asarray(self.sigma, dtype=np.float32)
            for d in range(sigma.shape[1]):
                out[f"sigma_{d}"] = sigma[:, d]
        return out


def _arrow(table: MapTable) -> pa.Table:
    import pyarrow as pa

    arrow = pa.table(table.columns())
    if table.provenance is not None:
        arrow = arrow.replace_schema_metadata({"explorer": table.provenance.json()})
    return arrow


def csv_bytes(table: MapTable) -> bytes:
    """Comment lines ("# key: value") saying where the map came from, a header row and one row per image
    (pyarrow's writer: 10,000 x 1,000 columns in about a second). Readers skip the comments with e.g.
    ``pandas.read_csv(path, comment="#")``."""
    import pyarrow.csv as pacsv

    buf = io.BytesIO()
    if table.provenance is not None:
        buf.write("".join(f"# {line}\n" for line in table.provenance.lines()).encode("utf-8"))
    pacsv.write_csv(_arrow(table), buf)
    return buf.getvalue()


def parquet_bytes(table: MapTable) -> bytes:
    """The table as Parquet (zstd); the provenance is the schema's ``explorer`` metadata, as JSON."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(_arrow(table), buf, compression="zstd")
    return buf.getvalue()


# In the saved page: a hovered point shows its image, cut from sprite sheets carried inside the file.
_HOVER_JS = """
(function () {
  const gd = document.getElementById('{plot_id}');
  const set = JSON.parse(document.getElementById('lx-sprites').textContent);
  const sheets = set.sheets.map((src) => { const img = new Image(); img.src = src; return img; });
  const box = document.createElement('canvas');
  Object.assign(box.style, { position: 'fixed', display: 'none', pointerEvents: 'none', zIndex: 1000,
    imageRendering: 'pixelated', border: '1px solid #999', background: 'white' });
  document.body.appendChild(box);
  gd.on('plotly_hover', (e) => {
    const p = e.points[0], id = Number(Array.isArray(p.customdata) ? p.customdata[0] : p.customdata);
    if (!(id >= 0 && id < set.n)) return;
    const img = sheets[Math.floor(id / set.per)], cell = id % set.per;
    const scale = Math.max(1, Math.round(112 / set.h));
    box.width = set.w * scale; box.height = set.h * scale;
    const ctx = box.getContext('2d'); ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, (cell % set.cols) * set.w, Math.floor(cell / set.cols) * set.h, set.w, set.h, 0, 0, box.width, box.height);
    const x = e.event ? e.event.clientX : 0, y = e.event ? e.event.clientY : 0;
    box.style.left = Math.max(4, x - box.width - 18) + 'px';
    box.style.top = Math.max(4, y - box.height - 12) + 'px';
    box.style.display = 'block';
  });
  gd.on('plotly_unhover', () => { box.style.display = 'none'; });
})();
"""


def map_html(
    figure: dict, *, title: str, provenance: Provenance | None = None, sprites: imaging.SpriteSheets | None = None
) -> bytes:
    """The map figure as one self-contained HTML page (plotly.js inline: it works without a network).

    In the app a drag selects images; in the file it zooms, which is what a reader of a saved map wants.
    ``sprites`` (the mapped images, ``explorer.figures.images.sprite_sheets``) travel inside the page, so a hovered point
    shows its image; ``provenance`` is written under the map and into a ``<meta>`` element."""
    import plotly.io as pio

    layout = dict(figure.get("layout", {}))
    layout.pop("images", None)  # a mosaic picture belongs to the live app; it would double the file
    layout.pop("meta", None)
    layout.update(
        title={"text": title, "font": {"size": 15}},
        height=None,  # fill the browser window instead of the app's column
        autosize=True,
        # room for the axes' tick labels (the app hides them in a narrow margin)
        margin={**layout.get("margin", {}), "t": 50, "l": 60, "b": max(50, layout.get("margin", {}).get("b", 0))},
    )
    if layout.get("dragmode") in ("select", "pan", "lasso"):
        layout["dragmode"] = "zoom"
    html = pio.to_html(
        {"data": figure["data"], "layout": layout},
        include_plotlyjs=True,
        full_html=True,
        default_width="100%",
        default_height="calc(100vh - 60px)" if provenance is not None else "100vh",
        config={"displaylogo": False, "responsive": True, "scrollZoom": True},
        post_script=_HOVER_JS if sprites is not None else None,
    )
    # the page's own title, so a browser tab shows what the map is of; the charset first, since titles and class
    # names may be any text (plotly.py writes the declaration in recent versions only)
    head = f"<title>{_escape_html(title)}</title>"
    if "charset" not in html[: html.find("</head>")]:
        head = '<meta charset="utf-8" />' + head
    if provenance is not None:
        head += f'<meta name="explorer-provenance" content="{_escape_html(provenance.json(), quotes=True)}" />'
    html = html.replace("<head>", "<head>" + head, 1)
    body = ""
    if sprites is not None:
        data = {
            "sheets": ["data:image/png;base64," + base64.b64encode(s).decode("ascii") for s in sprites.sheets],
            "per": sprites.per_sheet, "cols": sprites.cols, "h": sprites.cell_h, "w": sprites.cell_w,
            "n": sprites.count,
        }  # fmt: skip
        # before the plot's own script (which runs the hover script): JSON cannot end a <script> element early
        payload = json.dumps(data).replace("</", "<\\/")
        body += f'<script type="application/json" id="lx-sprites">{payload}</script>'
    if provenance is not None:
        text = " · ".join(_escape_html(line) for line in provenance.lines())
        body += f'<p style="font: 12px sans-serif; color: #555; margin: 4px 12px">{text}</p>'
    html = html.replace("<body>", "<body>" + body, 1) if "<body>" in html else html
    return html.encode("utf-8")


def _escape_html(text: str, *, quotes: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if quotes else text


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
    made = "".join(f"  {line}\n" for line in table.provenance.lines()) if table.provenance is not None else ""
    readme = (
        f"{name}: {n:,} images, {dims} latent dimensions, exported by the latent space explorer.\n"
        + (f"\nWhere it came from:\n{made}" if made else "")
        + "\n"
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
