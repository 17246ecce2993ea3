"""Image edits, PSNR and code sizes, checked on small arrays with hand-computed answers."""

import io
import math

import numpy as np
import pytest
from PIL import Image

from explorer import models
from explorer.data.uploads import load_user_image
from explorer.errors import DatasetError
from explorer.quality import compression
from explorer.quality.compression import ProbeError

# ----------------------------------------------------------------------------------- PSNR


def test_psnr_of_identical_images_is_infinite():
    x = np.random.default_rng(0).integers(0, 256, (3, 5, 5), dtype=np.uint8)
    assert compression.psnr(x, x) == math.inf
    assert np.all(compression.psnr_each(x, x) == math.inf)
    assert compression.mean_db(compression.psnr_each(x, x)) == math.inf


def test_psnr_of_a_constant_offset_is_hand_computed():
    a = np.zeros((2, 4, 4), np.uint8)
    b = np.full((2, 4, 4), 10, np.uint8)
    # MSE = (10/255)^2 in [0, 1] units, so PSNR = 20 log10(255 / 10) = 28.1308 dB
    assert compression.psnr(a, b) == pytest.approx(20 * math.log10(25.5), abs=1e-9)
    assert compression.psnr_each(a, b) == pytest.approx([28.130803608679106] * 2, abs=1e-9)
    # the same images as floats in [0, 1] give the same answer; an offset of 0.1 gives exactly 20 dB
    assert compression.psnr(a / 255.0, b / 255.0) == pytest.approx(compression.psnr(a, b))
    assert compression.psnr(np.zeros((1, 3, 3)), np.full((1, 3, 3), 0.1)) == pytest.approx(20.0)


def test_psnr_per_image_and_mean_skip_perfect_copies():
    a = np.zeros((2, 2, 2), np.uint8)
    b = a.copy()
    b[1] = 255  # image 1 fully wrong: MSE 1, 0 dB; image 0 identical
    each = compression.psnr_each(a, b)
    assert each[0] == math.inf and each[1] == pytest.approx(0.0)
    assert compression.mean_db(each) == pytest.approx(0.0)
    assert compression.psnr(a, b) == pytest.approx(-10 * math.log10(0.5))  # one MSE over both: 0.5


@pytest.mark.parametrize(
    "a, b, says",
    [
        (np.zeros((1, 3, 3)), np.zeros((1, 3, 4)), "one shape"),
        (np.zeros((1, 3, 3)), np.full((1, 3, 3), 2.0), "lie in"),
        (np.zeros((3, 3)), np.zeros((3, 3)), "batch"),
        (np.zeros((1, 3, 3), np.int32), np.zeros((1, 3, 3), np.int32), "uint8 or float"),
    ],
)
def test_psnr_refuses_what_it_cannot_compare(a, b, says):
    with pytest.raises(ProbeError, match=says):
        compression.psnr(a, b)


# ----------------------------------------------------------------------------------- noise


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("noise", list(compression.NOISES))
def test_noise_is_seeded_bounded_and_keeps_dtype_and_shape(noise, dtype):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 6, 6, 3), dtype=np.uint8)
    x = x if dtype == np.uint8 else (x / 255.0).astype(np.float32)
    a = compression.add_noise(x, noise=noise, level=0.4, seed=7)
    assert a.dtype == x.dtype and a.shape == x.shape
    assert np.array_equal(a, compression.add_noise(x, noise=noise, level=0.4, seed=7))
    assert not np.array_equal(a, compression.add_noise(x, noise=noise, level=0.4, seed=8))
    assert not np.array_equal(a, x)
    if dtype != np.uint8:
        assert a.min() >= 0.0 and a.max() <= 1.0
    assert np.array_equal(compression.add_noise(x, noise=noise, level=0.0, seed=7), x)  # level 0 changes nothing


def test_gaussian_noise_has_the_asked_spread_and_clips():
    x = np.full((1, 200, 200), 0.5)
    y = compression.gaussian_noise(x, sigma=0.1, seed=0)
    assert (y - x).std() == pytest.approx(0.1, rel=0.03)
    assert abs((y - x).mean()) < 0.005
    big = compression.gaussian_noise(np.full((1, 50, 50), 128, np.uint8), sigma=1.0, seed=0)
    assert big.min() == 0 and big.max() == 255  # far past the range: clipped, not wrapped


def test_salt_and_pepper_flips_about_the_rate_to_black_or_white_in_all_channels():
    x = np.full((2, 100, 100, 3), 128, np.uint8)
    y = compression.salt_and_pepper(x, rate=0.2, seed=3)
    changed = (y != 128).any(axis=3)  # (N, H, W)
    assert changed.mean() == pytest.approx(0.2, abs=0.01)
    flipped = y[changed]  # (M, 3)
    assert set(np.unique(flipped)) == {0, 255}
    assert (flipped == flipped[:, :1]).all()  # a pixel turns black or white in every channel at once
    assert (y[changed].mean(axis=1) == 255).mean() == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize("level", [-0.1, 1.5, float("nan")])
def test_noise_levels_outside_zero_to_one_are_refused(level):
    with pytest.raises(ProbeError, match="between 0 and 1"):
        compression.gaussian_noise(np.zeros((1, 2, 2), np.uint8), sigma=level)
    with pytest.raises(ProbeError, match="between 0 and 1"):
        compression.salt_and_pepper(np.zeros((1, 2, 2), np.uint8), rate=level)


def test_unknown_noise_is_named():
    with pytest.raises(ProbeError, match="gaussian"):
        compression.add_noise(np.zeros((1, 2, 2), np.uint8), noise="speckle", level=0.1)


# ----------------------------------------------------------------------------------- occlusion, shift, invert


def test_occlusion_paints_exactly_the_square_and_clips_at_the_border():
    x = np.full((1, 5, 5), 9, np.uint8)
    y = compression.occlude(x, top=1, left=2, size=2)
    want = x.copy()
    want[0, 1:3, 2:4] = 0
    assert np.array_equal(y, want)
    assert np.array_equal(x, np.full((1, 5, 5), 9, np.uint8))  # the input is left alone
    edge = compression.occlude(x, top=3, left=4, size=3, value=1.0)  # runs off the bottom right corner
    assert (edge[0, 3:, 4:] == 255).all() and (edge == 255).sum() == 2
    assert np.array_equal(compression.occlude(x, top=0, left=0, size=0), x)
    with pytest.raises(ProbeError, match=">= 0"):
        compression.occlude(x, top=0, left=0, size=-1)


def test_shift_moves_content_without_wrapping():
    x = np.arange(1, 10, dtype=np.uint8).reshape(1, 3, 3)  # [[1 2 3] [4 5 6] [7 8 9]]
    right_down = compression.shift(x, dx=1, dy=1)
    assert right_down[0].tolist() == [[0, 0, 0], [0, 1, 2], [0, 4, 5]]
    left_up = compression.shift(x, dx=-1, dy=-2)
    assert left_up[0].tolist() == [[8, 9, 0], [0, 0, 0], [0, 0, 0]]
    assert np.array_equal(compression.shift(x, dx=0, dy=0), x)
    assert (compression.shift(x, dx=3, dy=0) == 0).all()  # out of the frame entirely
    white = compression.shift(np.zeros((1, 2, 2, 3)), dx=1, dy=0, fill=1.0)
    assert white[0, :, 0].tolist() == [[1.0] * 3] * 2 and (white[0, :, 1] == 0).all()


def test_invert_and_edits_apply_in_order_and_describe_themselves():
    x = np.zeros((1, 4, 4), np.uint8)
    assert (compression.invert(x) == 255).all()
    assert np.allclose(compression.invert(np.full((1, 2, 2), 0.25)), 0.75)
    edits = compression.Edits(invert=True, dx=1, occlusion=2, top=0, left=0)
    y = edits.apply(x)
    # inverted to white, shifted right (black enters on the left), then a black 2x2 square at the corner
    want = np.full((4, 4), 255, np.uint8)
    want[:, 0] = 0
    want[0:2, 0:2] = 0
    assert np.array_equal(y[0], want)
    assert edits.describe() == "inverted, shifted (+1, +0), 2 px square at (0, 0)"
    assert compression.Edits().describe() == "unedited"
    assert np.array_equal(compression.Edits().apply(x), x)
    noisy = compression.Edits(noise="gaussian", level=0.3, seed=4)
    assert np.array_equal(noisy.apply(x), compression.gaussian_noise(x, sigma=0.3, seed=4))
    assert noisy.describe() == "gaussian noise 0.30"


# ----------------------------------------------------------------------------------- compression


def test_code_sizes_are_exact_for_a_given_latent_size():
    s = compression.code_sizes(32, (1, 28, 28))
    assert (s.raw, s.float32, s.float16, s.quantized, s.table) == (784, 128, 64, 32, 256)
    assert s.quantized_with_table(256) == 33.0  # 32 bytes + 256 bytes shared by 256 images
    four = compression.code_sizes(33, (3, 8, 8), bits=4)
    assert (four.raw, four.float16, four.quantized, four.table) == (192, 66, 17, 264)  # 33 * 4 bits = 16.5 bytes
    with pytest.raises(ProbeError, match="bits"):
        compression.code_sizes(32, (1, 28, 28), bits=9)


def test_sparse_bytes_count_index_and_float16_value_per_non_zero():
    z = np.zeros((2, 1024), np.float32)
    z[0, :32] = 1.0
    z[1, :16] = 2.0
    assert compression.sparse_bytes(z) == 24 * 4  # mean 24 non-zeros, each a 2-byte index and a 2-byte value
    assert compression.sparse_bytes(np.ones((1, 200))) == 200 * 3  # 200 features: a 1-byte index


def test_quantization_round_trips_within_half_a_step_and_handles_constant_dims():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(100, 5)).astype(np.float32)
    z[:, 4] = 0.7  # a constant dimension: its range is empty
    lo, hi = compression.latent_range(z)
    q = compression.quantize(z, lo, hi, bits=8)
    assert q.dtype == np.uint8 and q[:, 4].max() == 0
    assert q[:, :4].min() == 0 and q[:, :4].max() == 255  # the extremes land on the end levels
    back = compression.dequantize(q, lo, hi, bits=8)
    step = (hi - lo) / 255
    assert (np.abs(back - z)[:, :4] <= step[:4] / 2 + 1e-6).all()
    assert np.allclose(back[:, 4], 0.7)
    outside = compression.quantize(np.array([[10.0] * 5]), lo, hi)
    assert outside[0, :4].tolist() == [255] * 4  # clipped, never wrapped around
    two = compression.quantize(z, lo, hi, bits=2)
    assert set(np.unique(two[:, :4])) <= {0, 1, 2, 3}


def test_png_size_is_lossless_and_small_for_flat_images():
    flat = np.zeros((28, 28), np.uint8)
    noisy = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    assert compression.png_size(flat) < 100 < 784 < compression.png_size(noisy)
    with pytest.raises(ProbeError, match="one uint8 image"):
        compression.png_size(np.zeros((1, 28, 28), np.uint8))


def test_compression_of_a_tiny_model_scores_each_storage():
    model = models.build(models.config_class("ae")(hidden=(16,), latent_dim=4)).eval()
    x = np.random.default_rng(0).integers(0, 256, (6, 28, 28), dtype=np.uint8)
    lo, hi = compression.latent_range(compression.encode(model, x))
    comp = compression.compression(model, x, lo=lo, hi=hi, examples=2)
    assert comp.sizes.float16 == 8 and comp.sizes.quantized == 4 and comp.n_images == 6
    assert set(comp.psnr) == set(compression.STORAGES) and all(np.isfinite(v) for v in comp.psnr.values())
    assert comp.psnr["float16"] == pytest.approx(comp.psnr["float32"], abs=0.05)
    assert comp.examples["quantized"].shape == (2, 28, 28) and comp.sparse is None
    assert comp.png == pytest.approx(np.mean([compression.png_size(im) for im in x]))


def test_denoise_curve_is_repeatable_and_falls_with_the_noise():
    model = models.build(models.config_class("ae")(hidden=(16,), latent_dim=4)).eval()
    x = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    noisy, recon = compression.denoise_curve(model, x, noise="gaussian", levels=[0.05, 0.5], seed=1)
    assert noisy[0] > noisy[1] and noisy.shape == recon.shape == (2,)
    again = compression.denoise_curve(model, x, noise="gaussian", levels=[0.05, 0.5], seed=1)
    assert np.array_equal(noisy, again[0]) and np.array_equal(recon, again[1])


# ----------------------------------------------------------------------------------- one uploaded image


def _png(size, mode="RGB", colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 128).save(buf, format="PNG")
    return buf.getvalue()


def test_an_uploaded_photo_is_cropped_to_the_aspect_and_resized():
    img, original = load_user_image(_png((640, 480)), filename="photo.png", input_shape=(1, 28, 28))
    assert img.shape == (28, 28) and img.dtype == np.uint8 and original == (480, 640)
    assert int(img[0, 0]) == round(0.299 * 200 + 0.587 * 30 + 0.114 * 30)  # grey by ITU-R 601, as PIL
    colour, _ = load_user_image(_png((64, 64)), filename="c.png", input_shape=(3, 32, 32))
    assert colour.shape == (32, 32, 3) and colour[5, 5].tolist() == [200, 30, 30]


@pytest.mark.parametrize(
    "data, says",
    [
        (b"", "empty"),
        (b"just some text", "not a PNG or JPEG"),
        (b"PK\x05\x06" + b"\0" * 18, "a zip file"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "damaged or truncated"),
        (_png((5, 5), "L"), "enlargement"),
        (_png((3000, 3000), "L"), "scale it down"),
    ],
)
def test_bad_uploaded_images_are_refused_with_a_reason(data, says):
    with pytest.raises(DatasetError, match=says):
        load_user_image(data, filename="bad.png", input_shape=(1, 28, 28))
