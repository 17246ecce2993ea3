"""Datasets: the built-in ones (digits, MNIST, Fashion-MNIST) and files a user uploads.

Every dataset leaving this package holds uint8 images, (N, H, W) grayscale or (N, H, W, 3) RGB, and int64
labels with -1 where unknown; ``to_float`` turns the images into the (N, C, H, W) floats models take.

- ``dataset``: the ``Dataset`` type and shape conversions (``to_float``, ``fit_to_shape``);
- ``builtin``: ``load_dataset`` and where each built-in set is found;
- ``read_idx``: the IDX (MNIST) file format, parsed by ``explorer.untrusted.idx``;
- ``uploads``: ``load_user_dataset`` for a stranger's .npz or .zip of images;
- ``source``: the ``ImageSource`` interface every dataset is read through, lazily, and the table of its kinds;
  one file per kind on disk (``folder``, ``npyfile``, ``parquet``, ``webdataset``: imported here, which puts
  their rows in the table; each claims only locations that hold its own files), sharing ``lazy``;
- ``host``: the host's own datasets (EXPLORER_DATA), opened on first use.
"""

# each kind's module puts its row in the table of kinds when imported
from explorer.data import folder, npyfile, parquet, webdataset  # noqa: F401
from explorer.data.builtin import (
    FASHION_ENV,
    FASHION_NAMES,
    IDX_FILES,
    SPLITS,
    clear_cache,
    dataset_names,
    load_dataset,
)
from explorer.data.dataset import Dataset, fit_to_shape, to_float
from explorer.data.host import (
    configured,
    configured_names,
    configured_source,
    configured_subset,
    forget_configured,
)
from explorer.data.source import ArraySource, ImageSource, open_source, skipped_summary, source_digest, subset
from explorer.data.uploads import DEFAULT_LIMITS, Limits, load_user_dataset
from explorer.untrusted.idx import read_idx

__all__ = [
    "DEFAULT_LIMITS",
    "ArraySource",
    "ImageSource",
    "configured",
    "configured_names",
    "configured_source",
    "configured_subset",
    "forget_configured",
    "open_source",
    "skipped_summary",
    "source_digest",
    "subset",
    "FASHION_ENV",
    "FASHION_NAMES",
    "IDX_FILES",
    "SPLITS",
    "Dataset",
    "Limits",
    "clear_cache",
    "dataset_names",
    "fit_to_shape",
    "load_dataset",
    "load_user_dataset",
    "read_idx",
    "to_float",
]
