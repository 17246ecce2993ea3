"""Every export read back with an ordinary reader: the tables have N rows and the right columns, the Projector's
files their row counts and sizes, the HTML map its points."""

import base64
import csv
import io
import json
import re
import zipfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from explorer.figures import exports
from explorer.figures.map import map_figure

N, L = 37, 5
CLASSES = ["zero", "one", "two\twith a tab"]


@pytest.fixture
def table() -> exports.MapTable:
    rng = np.random.default_rng(0)
    return exports.MapTable(
        embedding=rng.normal(size=(N, 2)).astype(np.float32),
        latents=rng.normal(size=(N, L)).astype(np.float32),
        labels=np.arange(N) % 3 - (np.arange(N) == N - 1),  # the last one unlabelled (-1)
        class_names=CLASSES,
        recon_error=rng.uniform(0, 0.1, N).astype(np.float32),
        stats={"kl": rng.uniform(0, 5, N).astype(np.float32)},
    )


@pytest.fixture
def pictures() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (N, 28, 28), dtype=np.uint8)


EXPECTED = ["index", "map_x", "map_y", "label", "class", "recon_error", "kl"] + [f"latent_{d}" for d in range(L)]


def test_csv_has_a_header_and_one_row_per_image(table):
    rows = list(csv.reader(io.StringIO(exports.csv_bytes(table).decode())))
    assert rows[0] == EXPECTED
    assert len(rows) == N + 1
    first = dict(zip(rows[0], rows[1]))
    assert first["index"] == "0" and first["class"] == "zero"
    assert float(first["latent_3"]) == pytest.approx(float(table.latents[0, 3]), rel=1e-6)
    assert dict(zip(rows[0], rows[-1]))["class"] == "", "an unlabelled image has no class name"


def test_parquet_reads_back_with_the_same_values(table):
    read = pq.read_table(io.BytesIO(exports.parquet_bytes(table)))
    assert read.column_names == EXPECTED
    assert read.num_rows == N
    np.testing.assert_array_equal(read["index"].to_numpy(), np.arange(N))
    np.testing.assert_allclose(read["map_y"].to_numpy(), table.embedding[:, 1])
    np.testing.assert_allclose(read["latent_4"].to_numpy(), table.latents[:, 4])
    assert read["class"].to_pylist()[:3] == CLASSES


def test_a_3d_map_has_a_third_coordinate(table):
    t3 = exports.MapTable(
        np.zeros((N, 3), np.float32), table.latents, table.labels, CLASSES, table.recon_error, table.stats
    )
    assert list(t3.columns())[:4] == ["index", "map_x", "map_y", "map_z"]


def test_mismatched_columns_are_refused(table):
    with pytest.raises(exports.ExportError, match="one value per mapped image"):
        exports.MapTable(table.embedding, table.latents[:-1], table.labels, CLASSES, table.recon_error)


def test_projector_zip_holds_the_four_files_the_projector_reads(table, pictures):
    archive = zipfile.ZipFile(io.BytesIO(exports.projector_zip(table, pictures, name="test map")))
    assert set(archive.namelist()) == set(exports.PROJECTOR_FILES)
    vectors = archive.read("vectors.tsv").decode().splitlines()
    assert len(vectors) == N
    assert all(len(line.split("\t")) == L for line in vectors)
    np.testing.assert_allclose(np.array([v.split("\t") for v in vectors], float), table.latents, rtol=1e-6)
    meta = archive.read("metadata.tsv").decode().splitlines()
    assert meta[0] == "index\tlabel\tclass\trecon_error"
    assert len(meta) == N + 1
    assert all(len(line.split("\t")) == 4 for line in meta), "a tab inside a class name must not add a column"
    assert meta[3].split("\t")[2] == "two with a tab"
    config = json.loads(archive.read("projector_config.json"))
    (embedding,) = config["embeddings"]
    assert embedding["tensorShape"] == [N, L]
    assert {embedding["tensorPath"], embedding["metadataPath"], embedding["sprite"]["imagePath"]} <= set(
        archive.namelist()
    )
    sprite = Image.open(io.BytesIO(archive.read("sprite.png")))
    per_row = int(np.ceil(np.sqrt(N)))  # 7 x 7 cells for 37 images
    assert embedding["sprite"]["singleImageDim"] == [28, 28]
    assert sprite.size == (per_row * 28, per_row * 28)


def test_sprite_tiles_sit_row_by_row(pictures):
    art = exports.sprite(pictures)
    grid = np.asarray(Image.open(io.BytesIO(art.png)))
    np.testing.assert_array_equal(grid[:28, 28:56], pictures[1])  # row 0, column 1
    np.testing.assert_array_equal(grid[28:56, :28], pictures[art.per_row])  # row 1, column 0
    assert (grid[-28:, -28:] == 255).all(), "cells past the last image stay white"


def test_a_large_sprite_shrinks_its_tiles_to_stay_within_the_limit():
    colour = np.zeros((300, 64, 48, 3), np.uint8)  # 18 x 18 cells of 64 x 48 would be 1152 pixels high
    art = exports.sprite(colour, max_side=512)
    w, h = Image.open(io.BytesIO(art.png)).size
    assert art.per_row == 18
    assert max(w, h) <= 512
    assert art.thumb == (21, 28)  # 48 x 64 scaled by 512 / (18 * 64), rounded down, aspect kept
    assert (w, h) == (18 * 21, 18 * 28)


def test_projector_refuses_images_that_are_not_the_mapped_ones(table, pictures):
    with pytest.raises(exports.ExportError, match="same images"):
        exports.projector_files(table, pictures[:-1], name="x")


def test_html_map_is_standalone_and_holds_every_point(table):
    figure = map_figure(table.embedding, table.labels, table.class_names)
    html = exports.map_html(figure, title="A <test> map").decode()
    assert "<html>" in html[:100] and "<title>A &lt;test&gt; map</title>" in html
    assert "<script src=" not in html, "plotly.js is inside the file, not fetched"
    assert len(html) > 3_000_000, "plotly.js itself is several megabytes"
    for name in ("zero", "one", "unlabelled"):
        assert f'"name":"{name}"' in html
    # the points' row ids, as Plotly's typed arrays: every mapped image exactly once
    ids = [
        np.frombuffer(base64.b64decode(data), dtype="<i4")
        for data in re.findall(r'"customdata":\{"dtype":"i4","bdata":"([^"]+)"\}', html)
    ]
    np.testing.assert_array_equal(np.sort(np.concatenate(ids)), np.arange(N))
    assert '"dragmode":"zoom"' in html, "a saved map zooms on drag; the app's box selection means nothing there"


def test_selection_png_pairs_each_image_with_its_reconstruction(pictures):
    png = exports.selection_png(pictures[:10], 255 - pictures[:10], cols=4)
    w, h = Image.open(io.BytesIO(png)).size
    scale = 2  # 28-pixel images come out about 56 pixels high
    assert (w, h) == (4 * 2 * 28 * scale + 3 * 4, 3 * 28 * scale + 2 * 4)
    with pytest.raises(exports.ExportError):
        exports.selection_png(pictures[:3], pictures[:2])


@pytest.mark.parametrize(
    ("parts", "stem"),
    [(("⬆ my model.safetensors", "fashion-mnist-test", 10000), "my-model.safetensors-fashion-mnist-test-10000"),
     (("", "../../etc/passwd"), "..-..-etc-passwd"), ((), "export")],
)  # fmt: skip
def test_file_stems_are_plain(parts, stem):
    assert exports.file_stem(*parts) == stem
