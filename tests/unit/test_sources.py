"""The kinds of source on disk (folder, Parquet, WebDataset, .npy/.npz), each on small files made here: length,
labels, reads by index resized as read, the same answer twice, where each image came from; broken and hostile
files skipped and reported; the host's EXPLORER_DATA and EXPLORER_DATA_FILE read and checked."""

import io
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer import settings
from explorer.data import configured_names, configured_source, forget_configured, open_source, subset
from explorer.data.folder import FolderSource
from explorer.data.lazy import expand_braces
from explorer.data.npyfile import NpySource
from explorer.data.source import KINDS, skipped_summary, source_digest
from explorer.data.webdataset import WebDatasetSource, split_key
from explorer.errors import DatasetError
from explorer.untrusted.archive import tar_index

SHAPE = (1, 16, 16)


def png(image: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image, mode).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG")
    return buf.getvalue()


def picture(seed: int, size: int = 20, colour: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3) if colour else (size, size), dtype=np.uint8)


def huge_png_header(side: int = 50_000) -> bytes:
    """A valid PNG signature and IHDR claiming side x side pixels, and one tiny IDAT: a decompression bomb's face."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def classes(tmp_path) -> Path:
    """Two classes of three grey images each, 20x20."""
    root = tmp_path / "classes"
    for c, name in enumerate(["dog", "cat"]):
        (root / name).mkdir(parents=True)
        for k in range(3):
            (root / name / f"{k}.png").write_bytes(png(picture(10 * c + k)))
    return root


@pytest.fixture
def broken(tmp_path) -> Path:
    """Good images beside broken and absurd ones."""
    root = tmp_path / "broken"
    root.mkdir()
    (root / "good1.png").write_bytes(png(picture(1)))
    (root / "good2.jpg").write_bytes(jpeg(Image.fromarray(picture(2, colour=True))))
    (root / "rgba.png").write_bytes(png(np.dstack([picture(3, colour=True), picture(4)]), "RGBA"))
    (root / "cmyk.jpg").write_bytes(jpeg(Image.fromarray(picture(5, colour=True)).convert("CMYK")))
    deep = Image.fromarray(picture(6).astype(np.uint16) * 257)  # mode I;16
    buf = io.BytesIO()
    deep.save(buf, format="PNG")
    (root / "grey16.png").write_bytes(buf.getvalue())
    (root / "truncated.png").write_bytes(png(picture(7))[:60])
    (root / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    (root / "bomb.png").write_bytes(huge_png_header())
    (root / "empty.png").write_bytes(b"")
    (root / "readme.txt").write_text("not listed: not an image name")
    return root


def test_every_kind_is_in_the_table():
    assert [k.name for k in KINDS] == ["folder", "npy", "parquet", "webdataset"]


def test_folder_classes_labels_and_resized_reads(classes):
    src = open_source("pets", str(classes))
    assert isinstance(src, FolderSource)
    assert len(src) == 6 and src.class_names == ["cat", "dog"]  # sorted
    assert list(src.labels()) == [0, 0, 0, 1, 1, 1]
    assert src.where(0) == "cat/0.png"
    got = src.read(np.array([4, 0]), SHAPE)
    assert got.images.shape == (2, 16, 16) and got.images.dtype == np.uint8 and list(got.index) == [4, 0]
    again = src.read(np.array([4, 0]), SHAPE)
    assert np.array_equal(got.images, again.images)
    colour = src.read(np.array([1]), (3, 24, 24))
    assert colour.images.shape == (1, 24, 24, 3)
    natural = src.read(np.array([2]))
    assert natural.images.shape == (1, 20, 20)
    assert np.array_equal(natural.images[0], picture(12))  # cat/2.png: class 1, image 2
    assert source_digest(src) == source_digest(open_source("pets", str(classes)))


def test_folder_without_subfolders_has_no_labels(tmp_path):
    for k in range(3):
        (tmp_path / f"{k}.png").write_bytes(png(picture(k)))
    src = open_source("flat", str(tmp_path))
    assert src.class_names == [] and list(src.labels()) == [-1, -1, -1]


def test_a_folder_with_broken_and_absurd_images_maps_the_good_ones_and_reports_the_rest(broken):
    src = open_source("mixed", str(broken))
    assert len(src) == 9  # readme.txt is not an image name
    ds, skipped = subset(src, 100, seed=0, shape=(3, 16, 16))
    assert len(ds) == 5 and ds.images.shape == (5, 16, 16, 3)
    why = {src.where(i): reason for i, reason in skipped}
    assert set(why) == {"truncated.png", "notes.jpg", "bomb.png", "empty.png"}
    assert "pixels" in why["bomb.png"] and "not an image" in why["notes.jpg"]
    assert "truncated" in why["truncated.png"] and "empty" in why["empty.png"]
    message = skipped_summary(skipped, len(src))
    assert message.startswith("4 of 9 images skipped") and "bomb.png" in message
    grey = src.read(np.array([src.files.index("grey16.png")]))  # natural shape: the first readable image's
    assert grey.images.dtype == np.uint8 and len(grey.index) == 1


def test_a_subset_is_the_same_every_time(classes):
    src = open_source("pets", str(classes))
    a, _ = subset(src, 4, seed=3, shape=SHAPE)
    b, _ = subset(src, 4, seed=3, shape=SHAPE)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


def test_an_image_too_small_for_the_model_is_skipped_and_a_wide_one_cropped(tmp_path):
    (tmp_path / "tiny.png").write_bytes(png(picture(1, size=4)))
    (tmp_path / "wide.png").write_bytes(png(np.zeros((20, 60), np.uint8)))
    src = open_source("sizes", str(tmp_path))
    got = src.read(np.arange(2), (1, 32, 32))
    assert [src.where(i) for i in got.index] == ["wide.png"]
    assert "too small" in got.skipped[0][1]


# --- Parquet ----------------------------------------------------------------------------------------------


def write_parquet(path: Path, labels: list, *, names: list[str] | None = None, rows_per_group: int = 2) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    cells = [{"bytes": png(picture(k)), "path": f"{k}.png"} for k in range(len(labels))]
    table = pa.table({"image": cells, "label": labels})
    if names is not None:  # what `datasets` writes for a ClassLabel column
        meta = {"info": {"features": {"label": {"_type": "ClassLabel", "names": names}}}}
        table = table.replace_schema_metadata({b"huggingface": json.dumps(meta).encode()})
    pq.write_table(table, path, row_group_size=rows_per_group)


def test_parquet_in_the_datasets_layout(tmp_path):
    write_parquet(tmp_path / "train-00000.parquet", [0, 1, 1, 0, 2], names=["a", "b", "c"])
    write_parquet(tmp_path / "train-00001.parquet", [2, 2, 0])
    src = open_source("hf", str(tmp_path / "*.parquet"))
    assert len(src) == 8 and src.class_names == ["a", "b", "c"]
    assert list(src.labels()) == [0, 1, 1, 0, 2, 2, 2, 0]
    got = src.read(np.array([6, 2, 4]), SHAPE)
    assert got.images.shape == (3, 16, 16) and list(got.index) == [6, 2, 4]
    natural = src.read(np.array([6, 2]))
    assert np.array_equal(natural.images[0], picture(1)) and np.array_equal(natural.images[1], picture(2))
    assert src.where(6) == "train-00001.parquet row group 0 row 1"
    assert open_source("hf", str(tmp_path)).digest == src.digest  # a folder of Parquet files is the same source


def test_parquet_with_string_labels_reads_only_what_it_needs(tmp_path):
    write_parquet(tmp_path / "d.parquet", ["zebra", "ant", None, "ant"])
    src = open_source("text", str(tmp_path / "d.parquet"))
    assert src.class_names == ["ant", "zebra"] and list(src.labels()) == [1, 0, -1, 0]
    with pytest.raises(DatasetError, match="no column 'pixels'"):
        open_source("text", str(tmp_path / "d.parquet"), image_column="pixels")


def test_parquet_rows_that_are_not_images_are_skipped(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"img": [png(picture(0)), b"garbage", None]}), tmp_path / "x.parquet")
    src = open_source("raw", str(tmp_path / "x.parquet"))
    got = src.read(np.arange(3), SHAPE)
    assert list(got.index) == [0] and len(got.skipped) == 2 and list(src.labels()) == [-1, -1, -1]


# --- WebDataset -------------------------------------------------------------------------------------------


def add(tar: tarfile.TarFile, name: str, data: bytes, **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in fields.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data))


def write_shard(path: Path, first: int, n: int, hostile: bool = False) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for k in range(first, first + n):
            add(tar, f"s/{k:06d}.png", png(picture(k)))
            add(tar, f"s/{k:06d}.cls", str(k % 3).encode())
        if hostile:
            add(tar, "../../etc/evil.png", png(picture(99)))
            link = tarfile.TarInfo("s/link.png")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)


def test_webdataset_shards_by_brace_pattern(tmp_path):
    write_shard(tmp_path / "shard-0000.tar", 0, 4)
    write_shard(tmp_path / "shard-0001.tar", 4, 3)
    src = open_source("wds", str(tmp_path / "shard-{0000..0001}.tar"))
    assert isinstance(src, WebDatasetSource)
    assert len(src) == 7 and src.class_names == ["0", "1", "2"]
    assert list(src.labels()) == [k % 3 for k in range(7)]
    got = src.read(np.array([5, 1]))
    assert np.array_equal(got.images[0], picture(5)) and np.array_equal(got.images[1], picture(1))
    assert src.where(5) == "shard-0001.tar:s/000005.png"
    assert src.read(np.array([5]), SHAPE).images.shape == (1, 16, 16)
    assert open_source("wds", str(tmp_path)).digest == src.digest


def test_webdataset_hostile_members_are_left_out(tmp_path):
    write_shard(tmp_path / "bad.tar", 0, 2, hostile=True)
    src = open_source("wds", str(tmp_path / "bad.tar"))
    assert len(src) == 2  # the climbing path and the link are not samples
    problems = " ".join(src.problems)
    assert "climbs out" in problems and "link" in problems


def test_a_member_declaring_a_huge_size_is_refused_unread(tmp_path):
    shard = tmp_path / "huge.tar"
    write_shard(shard, 0, 1)
    data = bytearray(shard.read_bytes())
    with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
        first = tar.getmembers()[0]
    # rewrite the first header's size field to 4 GiB - 1 (11 octal digits, the most it holds) and fix its checksum
    header = bytearray(data[first.offset : first.offset + 512])
    header[124:136] = b"%011o\0" % (4 * 2**30 - 1)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    data[first.offset : first.offset + 512] = header
    shard.write_bytes(bytes(data))
    entries, left_out = tar_index(shard, label="huge.tar", error=DatasetError)
    assert entries == [] and any("more than" in why for why in left_out)
    with pytest.raises(DatasetError, match="no samples"):
        WebDatasetSource("wds", str(shard))


def test_keys_and_braces():
    assert split_key("a/b/0001.seg.png") == ("a/b/0001", "seg.png")
    assert expand_braces("s-{08..10}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar"]
    assert expand_braces("{a,b}-{1..2}") == ["a-1", "a-2", "b-1", "b-2"]
    with pytest.raises(DatasetError):
        expand_braces("{0..99999999}")


# --- .npy / .npz ------------------------------------------------------------------------------------------


def test_npy_is_memory_mapped(tmp_path):
    images = np.stack([picture(k) for k in range(5)])
    np.save(tmp_path / "x.npy", images)
    src = open_source("arr", str(tmp_path / "x.npy"))
    assert isinstance(src, NpySource) and isinstance(src.images, np.memmap)
    assert len(src) == 5 and list(src.labels()) == [-1] * 5
    got = src.read(np.array([3, 1]))
    assert np.array_equal(got.images, images[[3, 1]]) and src.where(3) == "x.npy[3]"
    assert src.read(np.array([0]), SHAPE).images.shape == (1, 16, 16)


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_images_labels_and_names(tmp_path, save):
    images = np.stack([picture(k, colour=True) for k in range(4)]).transpose(0, 3, 1, 2) / 255.0  # floats, (N, C, H, W)
    save(tmp_path / "d.npz", images=images, labels=np.array([1, 0, 1, 0]), class_names=np.array(["x", "y"]))
    src = open_source("npz", str(tmp_path / "d.npz"))
    if save is np.savez:
        assert isinstance(src.images.base, np.memmap) or isinstance(src.images, np.memmap)
    assert src.class_names == ["x", "y"] and list(src.labels()) == [1, 0, 1, 0]
    got = src.read(np.array([2]))
    assert got.images.shape == (1, 20, 20, 3) and np.array_equal(got.images[0], picture(2, colour=True))


def test_npz_of_objects_is_refused(tmp_path):
    np.savez(tmp_path / "o.npz", images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError):
        open_source("o", str(tmp_path / "o.npz"))


def test_an_unknown_location_says_what_is_read(tmp_path, classes):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="no source the explorer reads"):
        open_source("x", str(tmp_path / "notes.txt"))
    with pytest.raises(DatasetError, match="takes no image_column"):
        open_source("x", str(classes), image_column="img")


# --- EXPLORER_DATA, EXPLORER_DATA_FILE --------------------------------------------------------------------


def test_explorer_data_pairs(tmp_path):
    s = settings.load({"EXPLORER_DATA": f"a={tmp_path},b=/data/shard-{{0000,0001}}.tar, c = rel/x.npy"})
    assert [(e.name, e.location) for e in s.data_sources][:2] == [
        ("a", str(tmp_path)),
        ("b", "/data/shard-{0000,0001}.tar"),
    ]
    assert Path(s.data_sources[2].location).is_absolute()


@pytest.mark.parametrize(
    "value, message",
    [
        ("celeba", "not name=location"),
        ("a=/x,a=/y", "more than once"),
        ("mnist=/x", "built-in"),
        ("bad name=/x", "letters, digits"),
        ("a=", "no location"),
    ],
)
def test_explorer_data_errors_name_the_variable(value, message):
    with pytest.raises(settings.SettingsError, match=message) as err:
        settings.load({"EXPLORER_DATA": value})
    assert "EXPLORER_DATA=" in str(err.value)


def test_explorer_data_file(tmp_path):
    (tmp_path / "data.toml").write_text(
        '[data.celeba]\npath = "imgs"\n[data.hf]\npath = "/d/*.parquet"\nimage_column = "img"\n'
    )
    s = settings.load({"EXPLORER_DATA_FILE": str(tmp_path / "data.toml"), "EXPLORER_DATA": "x=/x"})
    assert [e.name for e in s.data_sources] == ["celeba", "hf", "x"]
    assert s.data_sources[0].location == str(tmp_path / "imgs") and s.data_sources[1].image_column == "img"
    (tmp_path / "bad.toml").write_text('[data.a]\npath = "x"\ncolour = "red"\n')
    with pytest.raises(settings.SettingsError, match="colour"):
        settings.load({"EXPLORER_DATA_FILE": str(tmp_path / "bad.toml")})
    with pytest.raises(settings.SettingsError, match="more than once"):
        settings.load({"EXPLORER_DATA_FILE": str(tmp_path / "data.toml"), "EXPLORER_DATA": "hf=/y"})
    with pytest.raises(settings.SettingsError, match="not a file"):
        settings.load({"EXPLORER_DATA_FILE": str(tmp_path / "missing.toml")})


def test_reserved_names_are_the_builtin_datasets():
    from explorer.data import dataset_names

    assert tuple(dataset_names()) == settings.RESERVED_DATA_NAMES


def test_configured_sources_open_once(classes, monkeypatch):
    monkeypatch.setenv("EXPLORER_DATA", f"pets={classes}")
    forget_configured()
    assert configured_names() == ["pets"]
    assert configured_source("pets") is configured_source("pets")
    with pytest.raises(DatasetError, match="no dataset of the host's"):
        configured_source("cats")
    forget_configured()


def test_a_hosts_subset_says_what_was_left_out(tmp_path, monkeypatch):
    from explorer.data import configured_subset

    write_shard(tmp_path / "bad.tar", 0, 3, hostile=True)
    monkeypatch.setenv("EXPLORER_DATA", f"wds={tmp_path / 'bad.tar'}")
    forget_configured()
    ds, key, note, _ = configured_subset("wds", 0, SHAPE)
    assert len(ds) == 3 and len(key) == 64
    assert "2 archive members left out" in note and "climbs out" in note
    assert configured_subset("wds", 0, SHAPE)[0] is ds  # read once
    forget_configured()
