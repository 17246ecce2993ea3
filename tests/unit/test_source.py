"""The image-source interface: reads by index, batches that count their way through, seeded subsets, the table."""

import numpy as np
import pytest

from explorer.data import Dataset, load_dataset
from explorer.data.source import (
    KINDS,
    ArraySource,
    SourceKind,
    batches,
    open_source,
    register,
    skipped_summary,
    subset,
)
from explorer.errors import DatasetError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "test")


def test_array_source_reads_by_index_and_resizes(digits):
    src = ArraySource(digits)
    got = src.read(np.array([5, 0, 3]), shape=(1, 16, 16))
    assert got.images.shape == (3, 16, 16) and got.images.dtype == np.uint8
    assert list(got.index) == [5, 0, 3] and got.skipped == []
    assert np.array_equal(src.read(np.array([5])).images[0], digits.images[5])


def test_batches_cover_the_source_once_in_order(digits):
    src = ArraySource(digits)
    seen = [b.ids for b in batches(src, 64)]
    assert np.array_equal(np.concatenate(seen), np.arange(len(digits)))
    assert all(len(b) <= 64 for b in seen)
    first = next(batches(src, 10, start=20, stop=25))
    assert list(first.ids) == [20, 21, 22, 23, 24] and list(first.labels) == list(digits.labels[20:25])
    assert first.where[0] == f"{digits.name}[20]"
    with pytest.raises(DatasetError):
        next(batches(src, 0))


def test_a_subset_is_the_same_choice_as_the_datasets_own(digits):
    ds, skipped = subset(ArraySource(digits), 50, seed=3)
    assert skipped == []
    assert np.array_equal(ds.images, digits.subset(50, seed=3).images)
    assert np.array_equal(ds.labels, digits.subset(50, seed=3).labels)


class _Broken(ArraySource):
    """Every third image cannot be read."""

    def read(self, index, shape=None):
        index = np.asarray(index)
        good = index[index % 3 != 0]
        got = super().read(good, shape)
        return type(got)(got.images, got.index, [(int(i), "truncated file") for i in index if i % 3 == 0])


def test_skipped_images_are_reported_not_raised(digits):
    ds, skipped = subset(_Broken(digits), 30, seed=0)
    assert len(ds) + len(skipped) == 30 and all(i % 3 == 0 for i, _ in skipped)
    text = skipped_summary(skipped, 30)
    assert text.startswith(f"{len(skipped)} of 30 images skipped") and "truncated file" in text
    assert skipped_summary([], 30) == ""


def test_nothing_readable_is_a_clear_error():
    tiny = Dataset("tiny", np.zeros((1, 4, 4), np.uint8), np.zeros(1, np.int64))  # its one image is #0: unreadable
    with pytest.raises(DatasetError, match="none of the 1 images"):
        subset(_Broken(tiny), 5)


def test_the_table_opens_what_a_row_claims(digits):
    row = SourceKind(
        "test-digits", "the digits, for a test", lambda loc: loc == "digits://", lambda n, loc: ArraySource(digits)
    )
    register(row)
    try:
        assert len(open_source("d", "digits://")) == len(digits)
        with pytest.raises(DatasetError, match="no source the explorer reads"):
            open_source("x", "/nowhere/at/all.xyz")
        with pytest.raises(DatasetError, match="registered twice"):
            register(row)
    finally:
        KINDS.remove(row)
