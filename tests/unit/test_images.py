"""Image helpers: RGB conversion, grid arithmetic, PNG and GIF bytes that PIL reads back."""

import io

import numpy as np
import pytest
from PIL import Image, ImageSequence

from explorer.errors import ExplorerError
from explorer.figures import images


@pytest.fixture
def digits():
    return np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)


def test_to_rgb_accepts_gray_single_channel_and_rgb(digits):
    rgb = images.to_rgb(digits)
    assert rgb.shape == (10, 28, 28, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 2], digits)
    assert np.array_equal(images.to_rgb(digits[..., None]), rgb)
    assert images.to_rgb(rgb) is rgb
    for bad in (digits.astype(np.float32), digits[0], np.zeros((2, 4, 4, 2), np.uint8)):
        with pytest.raises(ExplorerError):
            images.to_rgb(bad)


def test_grid_shape_and_placement(digits):
    out = images.grid(digits, cols=4, pad=2)
    assert out.shape == (3 * 28 + 2 * 2, 4 * 28 + 3 * 2, 3)  # 10 images, 4 per row -> 3 rows
    assert np.array_equal(out[:28, :28, 0], digits[0])
    assert np.array_equal(out[30:58, 30:58, 0], digits[5])  # row 1, column 1
    assert (out[:, 28:30] == 255).all()  # padding between columns
    assert (out[60:, 2 * 30 :] == 255).all()  # the two empty cells of the last row
    assert images.grid(digits[:3], cols=8).shape == (28, 3 * 28 + 2 * 2, 3)  # cols capped at N
    assert (images.grid(digits, cols=4, pad_value=0)[:, 28:30] == 0).all()


def test_grid_scale_is_nearest_neighbour(digits):
    out = images.grid(digits[:2], cols=2, pad=0, scale=3)
    assert out.shape == (84, 168, 3)
    assert np.array_equal(out[::3, :84:3, 0], digits[0])
    assert np.array_equal(out[2::3, 86::3, 0], digits[1])
    with pytest.raises(ExplorerError):
        images.grid(digits, cols=2, scale=0)


def test_strip_is_one_row(digits):
    out = images.strip(digits[:5], pad=1, scale=2)
    assert out.shape == (56, 5 * 56 + 4, 3)


@pytest.mark.parametrize("shape", [(12, 9), (12, 9, 3)])
def test_png_round_trip(shape):
    array = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    data = images.png_bytes(array)
    assert data.startswith(b"\x89PNG")
    with Image.open(io.BytesIO(data)) as im:
        assert np.array_equal(np.asarray(im), array)


@pytest.mark.parametrize(("bounce", "expected"), [(True, 2 * 6 - 2), (False, 6)])
def test_gif_frame_count_and_pixels(digits, bounce, expected):
    data = images.gif_bytes(digits[:6], scale=2, duration_ms=50, bounce=bounce)
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "GIF" and im.size == (56, 56) and im.info.get("loop") == 0
        frames = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(im)]
    assert len(frames) == expected
    assert np.array_equal(frames[0][::2, ::2], digits[0])
    assert np.array_equal(frames[5][::2, ::2], digits[5])
    assert np.array_equal(frames[-1][::2, ::2], digits[1 if bounce else 5])


def test_gif_rgb_and_no_loop():
    rng = np.random.default_rng(2)
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    frames[:, :, :, 0] = rng.integers(0, 256, (3, 1, 1))  # a flat colour per frame: exact in any palette
    data = images.gif_bytes(frames, scale=1, loop=False)
    with Image.open(io.BytesIO(data)) as im:
        assert "loop" not in im.info
        got = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    assert len(got) == 4
    assert np.array_equal(got[1], frames[1])
    with pytest.raises(ExplorerError):
        images.gif_bytes(np.zeros((0, 8, 8), np.uint8))
