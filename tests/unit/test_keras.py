"""Keras .keras files beyond Dense Sequentials, read without Keras, reconstruct as Keras does.

The fixtures are written by ``tests/keras_files.py`` in Keras 3's layout, and its numpy forward pass is the
reference. Where Keras is installed (the test extra; torch backend), the same files are also loaded by Keras,
re-saved by Keras, imported, and compared with Keras' own ``predict``.
"""

import io
import json
import os
import re
import zipfile

import h5py
import numpy as np
import pytest
import torch

from explorer import models
from explorer.checkpoint import checkpoint_bytes, load_checkpoint
from explorer.errors import CheckpointError, ConfigError
from explorer.importers.keras import import_keras
from explorer.importers.options import ImportOptions, OptionError
from explorer.models import layerstack
from explorer.models.backbones import BACKBONES
from tests import keras_files as kf

TOL = 1e-5
UNIT = ImportOptions(input_range="unit")  # random weights: no sample image tells the pixel range apart


def denoising() -> kf.Model:
    """The keras.io convolutional denoising autoencoder."""
    return kf.functional(
        [
            kf.conv(32, 3, 1, "same", "relu"),
            kf.pool(2, "same"),
            kf.conv(32, 3, 1, "same", "relu"),
            kf.pool(2, "same"),
            kf.deconv(32, 3, 2, "same", "relu"),
            kf.deconv(32, 3, 2, "same", "relu"),
            kf.conv(1, 3, 1, "same", "sigmoid"),
        ],
        (28, 28, 1),
    )


def batchnorm_sequential() -> kf.Model:
    return kf.sequential(
        [
            kf.conv(8, 3, 2, "same"),  # 28 -> 14: TensorFlow pads one pixel, after
            kf.batch_norm(),
            kf.leaky_relu(0.3),
            kf.dropout(),
            kf.conv(16, 3, 2, "same", "relu"),
            kf.flatten(),
            kf.dense(10),
            kf.dense(7 * 7 * 16, "relu"),
            kf.reshape(7, 7, 16),
            kf.deconv(8, 3, 2, "same"),
            kf.batch_norm(),
            kf.relu(),
            kf.deconv(1, 3, 2, "same"),
            kf.activation("sigmoid"),
        ],
        (28, 28, 1),
    )


def rgb64() -> kf.Model:
    return kf.functional(
        [
            kf.conv(16, 4, 2, "same", "elu"),
            kf.conv(32, 3, 2, "same", "relu"),
            kf.pool(2),
            kf.flatten(),
            kf.dense(32, "tanh"),
            kf.dense(8 * 8 * 32, "softplus"),
            kf.reshape(8, 8, 32),
            kf.upsample(2),
            kf.deconv(16, 4, 2, "same", "relu"),
            kf.deconv(3, 3, 2, "same", "sigmoid"),
        ],
        (64, 64, 3),
    )


def odd_sizes() -> kf.Model:
    """Valid convolutions, "same" pooling of an odd size, padding, cropping, output_padding."""
    return kf.functional(
        [
            kf.conv(6, 3, 2, "valid", "leaky_relu"),  # 28 -> 13; the function's slope is 0.2, the layer's 0.3
            kf.pool(2, "same"),  # 13 -> 7, -inf padding after
            kf.deconv(6, 3, 2, "valid", "relu"),  # 7 -> 15
            kf.zero_pad(0, 1, 1, 0),  # 16
            kf.crop(1, 1, 1, 1),  # 14
            kf.deconv(1, 5, 2, "same", "sigmoid", output_padding=1),  # 28
        ],
        (28, 28, 1),
    )


def conv_vae() -> kf.Model:
    """The keras.io VAE: an encoder model ending in z_mean, z_log_var and a Sampling layer, a decoder model."""
    encoder = [kf.conv(8, 3, 2, "same", "relu"), kf.conv(16, 3, 2, "same", "relu"), kf.flatten(), kf.dense(32, "relu")]
    decoder = [
        kf.dense(7 * 7 * 16, "relu"),
        kf.reshape(7, 7, 16),
        kf.deconv(16, 3, 2, "same", "relu"),
        kf.deconv(8, 3, 2, "same", "relu"),
        kf.deconv(1, 3, 1, "same", "sigmoid"),
    ]
    return kf.vae(encoder, 4, decoder, (28, 28, 1))


def dense_pair() -> kf.Model:
    """An encoder and a decoder Sequential; the encoder's output (16) is not its narrowest layer (8)."""
    encoder = kf.sequential([kf.flatten(), kf.dense(8, "gelu"), kf.dense(16, "relu")], (28, 28, 1), "encoder")
    decoder = kf.sequential([kf.dense(64, "silu"), kf.dense(784, "sigmoid"), kf.reshape(28, 28, 1)], (16,), "decoder")
    return kf.sequential([encoder, decoder], (28, 28, 1))


CASES = dict(
    denoising=denoising, batchnorm=batchnorm_sequential, rgb64=rgb64, odd=odd_sizes, vae=conv_vae, pair=dense_pair
)


def _images(model: kf.Model) -> np.ndarray:
    return np.random.default_rng(1).random((6, *model.input_shape))  # (N, H, W, C)


def _ours(model, x_nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = model.reconstruct(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2)).float())
    return out.double().numpy().transpose(0, 2, 3, 1)


def _import(path, options: ImportOptions = UNIT):
    return import_keras(path.name, path.read_bytes(), options)


def _round_trip(model) -> None:
    again = load_checkpoint(checkpoint_bytes(model))
    assert again.config == model.config and again.config.backbone == "layerstack"
    x = torch.rand(3, *model.input_shape)
    with torch.no_grad():
        assert torch.equal(again.reconstruct(x), model.reconstruct(x))


@pytest.mark.parametrize("case", [c for c in CASES if c != "vae"])
def test_reconstructions_match_keras_semantics(tmp_path, case):
    written = kf.save(tmp_path / f"{case}.keras", CASES[case]())
    model, report = _import(tmp_path / f"{case}.keras")
    x = _images(written)
    want = written.forward(x).reshape(len(x), *written.input_shape)
    assert np.abs(_ours(model, x) - want).max() <= TOL
    assert model.kind == "ae" and model.input_shape == (written.input_shape[2], *written.input_shape[:2])
    assert {d.name: d.source for d in report.decisions}["activation"] == "file"
    _round_trip(model)


def test_one_model_splits_at_its_narrowest_output_a_pair_between_its_models(tmp_path):
    kf.save(tmp_path / "den.keras", denoising())
    model, report = _import(tmp_path / "den.keras")
    assert model.latent_dim == 7 * 7 * 32  # after the second pooling
    assert model.config.output_activation == "sigmoid" and model.config.layers["decoder"][-1]["type"] == "conv2d"
    assert "the narrowest layer output, 'max_pooling2d_1' (1568 values)" in report.remarks[0]
    assert report.shapes["encoder"].endswith("max_pool 7x7x32 -> flatten 1568")
    assert report.shapes["decoder"].startswith("1568 -> reshape 7x7x32 -> conv2d_transpose 14x14x32")
    kf.save(tmp_path / "pair.keras", dense_pair())
    model, report = _import(tmp_path / "pair.keras")
    assert model.latent_dim == 16
    assert "the boundary of the models 'encoder' and 'decoder'" in report.remarks[0]
    assert model.config.latent_activation == "relu"  # the file's, recorded


def test_keras_io_vae_is_a_vae_with_mean_and_log_variance(tmp_path):
    written = kf.save(tmp_path / "vae.keras", conv_vae())
    model, report = _import(tmp_path / "vae.keras")
    assert model.kind == "vae" and model.latent_dim == 4
    assert {d.name: (d.value, d.source) for d in report.decisions}["kind"] == ("vae", "file")
    assert any("encoder/sampling (Sampling)" in r for r in report.remarks)
    encoder, decoder = written.items
    x = _images(written)
    mean, log_var = encoder.forward(x)
    with torch.no_grad():
        mu, logvar = model.posterior(torch.from_numpy(x.transpose(0, 3, 1, 2)).float())
        decoded = model.decode(torch.from_numpy(mean).float()).numpy().transpose(0, 2, 3, 1)
    assert np.abs(mu.numpy() - mean).max() <= TOL and np.abs(logvar.numpy() - log_var).max() <= TOL
    assert np.abs(decoded - decoder.forward(mean)).max() <= TOL
    _round_trip(model)


def test_output_activation_and_input_range(tmp_path):
    stack = [kf.flatten(), kf.dense(32, "relu"), kf.dense(8), kf.dense(32, "relu"), kf.dense(784, "tanh")]
    written = kf.save(tmp_path / "tanh.keras", kf.sequential([*stack, kf.reshape(28, 28, 1)], (28, 28, 1)))
    model, _ = _import(tmp_path / "tanh.keras", ImportOptions(input_range="symmetric"))
    assert (model.config.output_activation, model.config.input_range) == ("tanh", "symmetric")
    x = _images(written)
    want = (written.forward(2 * x - 1) + 1) / 2  # Keras sees [-1, 1] and answers in [-1, 1]
    assert np.abs(_ours(model, x) - want.clip(0, 1)).max() <= TOL
    # left open, the pixel range is tried on sample images (here: the MNIST subset that suits 28x28x1)
    _, report = _import(tmp_path / "tanh.keras", ImportOptions())
    decisions = {d.name: d for d in report.decisions}
    assert decisions["output_activation"].source == "file"
    assert decisions["input_range"].source in ("inferred", "assumed")
    # tried on every built-in dataset: the one it reconstructs best is named last, with the runner-up's error
    assert [d.name for d in report.decisions][-3:] == ["output_activation", "input_range", "dataset"]
    assert (
        decisions["dataset"].source == "inferred" and decisions["dataset"].runner_up_error >= decisions["dataset"].error
    )


def test_a_linear_output_leaves_the_output_activation_open(tmp_path):
    """Logits of a model trained "from_logits" look like any linear output: the user or the data decides."""
    layers = [kf.flatten(), kf.dense(32, "relu"), kf.dense(8), kf.dense(784), kf.reshape(28, 28, 1)]
    written = kf.save(tmp_path / "logits.keras", kf.sequential(layers, (28, 28, 1)))
    model, report = _import(tmp_path / "logits.keras", ImportOptions(input_range="unit", output_activation="sigmoid"))
    assert {d.name: d.source for d in report.decisions}["output_activation"] == "user"
    x = _images(written)
    assert np.abs(_ours(model, x) - 1 / (1 + np.exp(-written.forward(x)))).max() <= TOL
    _, report = _import(tmp_path / "logits.keras")
    assert {d.name: d.source for d in report.decisions}["output_activation"] in ("inferred", "assumed")
    layers[-2] = kf.dense(784, "relu")  # pixel values, not logits: recorded, kept in the decoder, clipped
    written = kf.save(tmp_path / "relu.keras", kf.sequential(layers, (28, 28, 1)))
    model, report = _import(tmp_path / "relu.keras")
    assert {d.name: (d.value, d.source) for d in report.decisions}["output_activation"] == ("identity", "file")
    assert np.abs(_ours(model, x) - written.forward(x).clip(0, 1)).max() <= TOL


# --- refusals ----------------------------------------------------------------------------------------------


def _rewrite(path, edit) -> bytes:
    """The .keras file at ``path`` with its config.json text passed through ``edit``."""
    with zipfile.ZipFile(path) as zf:
        config, weights = zf.read("config.json").decode(), zf.read("model.weights.h5")
    return kf.write_raw(path, edit(config), weights)


def test_an_unsupported_layer_is_named_with_its_type(tmp_path):
    path = tmp_path / "attn.keras"
    kf.save(path, denoising())
    attention = '"MultiHeadAttention"'
    data = _rewrite(
        path, lambda c: c.replace('"Conv2DTranspose"', attention, 1).replace('"conv2d_transpose"', '"attn"')
    )
    with pytest.raises(CheckpointError) as caught:
        import_keras(path.name, data, UNIT)
    message = str(caught.value)
    assert message.startswith("attn.keras: layer 'attn' is a MultiHeadAttention, which the importer does not support")
    assert "supported: Conv2D, Conv2DTranspose, MaxPooling2D" in message
    custom = {"module": "__main__", "class_name": "VAE", "config": {"name": "vae"}, "registered_name": "Custom>VAE"}
    with pytest.raises(CheckpointError, match="the model is a 'VAE', a custom class whose layers the file"):
        import_keras("vae.keras", kf.write_raw(tmp_path / "vae.keras", custom, b""), UNIT)


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [
        (
            ImportOptions(activation="tanh"),
            "activation",
            "den.keras: the file says 'relu' but 'tanh' was asked for the hidden activation; leave that choice to the file",
        ),
        (
            ImportOptions(output_activation="identity"),
            "output_activation",
            "den.keras: the file says 'sigmoid' but 'identity' was asked for the output activation",
        ),
        (
            ImportOptions(kind="vae"),
            "kind",
            "den.keras: the file's encoder outputs one value per latent dimension, which a model of kind 'vae' cannot use",
        ),
        (
            ImportOptions(input_shape=(1, 32, 32)),
            "input_shape",
            "den.keras: the file says the input is 1,28,28 (C,H,W) but 1,32,32 was asked for the input shape",
        ),
    ],
)
def test_a_choice_that_contradicts_the_file_is_refused(tmp_path, options, option, message):
    kf.save(tmp_path / "den.keras", denoising())
    with pytest.raises(OptionError) as caught:
        _import(tmp_path / "den.keras", options)
    assert caught.value.option == option and str(caught.value).startswith(message)
    assert "--" not in str(caught.value)  # the command line adds its flag, the app its field label
    agreeing = dict(activation="relu", latent_activation="identity", output_activation="sigmoid")
    assert _import(tmp_path / "den.keras", ImportOptions(input_range="unit", **agreeing))[0].latent_dim == 1568


def test_graphs_that_are_not_one_chain_are_refused(tmp_path):
    path = tmp_path / "m.keras"
    kf.save(path, denoising())
    shared = _rewrite(path, lambda c: c.replace('"inbound_nodes": [{', '"inbound_nodes": [{"args": []}, {', 2))
    with pytest.raises(CheckpointError, match="is used more than once \\(a shared layer\\)"):
        import_keras(path.name, shared, UNIT)
    per_pixel = [kf.conv(4, 3, 1, "same"), kf.dense(8), kf.conv(1, 3, 1, "same", "sigmoid")]  # Dense on each pixel
    kf.save(path, kf.functional(per_pixel, (28, 28, 1)))
    with pytest.raises(CheckpointError, match="layer 'dense': a dense layer needs a vector input \\(flatten first\\)"):
        _import(path)
    kf.save(path, kf.functional([kf.conv(4, 3, 2, "same"), kf.conv(1, 3, 1, "same", "sigmoid")], (28, 28, 1)))
    with pytest.raises(CheckpointError, match="outputs 14x14x1 values per image but takes 28x28x1"):
        _import(path)


def test_weights_of_the_wrong_shape_are_refused_by_the_child(tmp_path):
    path = tmp_path / "den.keras"
    kf.save(path, denoising())
    with zipfile.ZipFile(path) as zf:
        config, weights = zf.read("config.json"), zf.read("model.weights.h5")
    buf = io.BytesIO(weights)
    with h5py.File(buf, "a") as h5:
        del h5["layers/conv2d_1/vars/0"]
        h5["layers/conv2d_1/vars/0"] = np.zeros((3, 3, 16, 32), np.float32)
    with pytest.raises(
        CheckpointError,
        match=r"layer 'conv2d_1': layers/conv2d_1/vars/0 \(kernel\) has shape \(3, 3, 16, 32\); expected \(3, 3, 32, 32\)",
    ):
        import_keras(path.name, kf.write_raw(path, json.loads(config), buf.getvalue()), UNIT)


def test_weights_are_read_in_the_child(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("h5py parsed a stranger's file in the server process")

    kf.save(tmp_path / "b.keras", batchnorm_sequential())
    monkeypatch.setattr(h5py, "File", boom)
    assert _import(tmp_path / "b.keras")[0].latent_dim == 10


# --- the layerstack backbone ----------------------------------------------------------------------------------


def _small_stack(latent: int = 4) -> dict:
    return {
        "encoder": [
            {"type": "conv2d", "filters": 4, "kernel": [3, 3], "strides": [2, 2], "padding": "same", "bias": True},
            {"type": "activation", "fn": "leaky_relu", "alpha": 0.3},
            {"type": "flatten"},
            {"type": "heads", "units": latent, "bias": True},
        ],
        "decoder": [
            {"type": "dense", "units": 4 * 14 * 14, "bias": True},
            {"type": "reshape", "shape": [14, 14, 4]},
            {
                "type": "conv2d_transpose",
                "filters": 1,
                "kernel": [3, 3],
                "strides": [2, 2],
                "padding": "same",
                "bias": False,
            },
        ],
    }


def test_layerstack_is_built_from_its_config_and_round_trips():
    cfg = models.config_class("vae")(
        input_shape=(1, 28, 28), latent_dim=4, backbone="layerstack", layers=_small_stack()
    )
    model = models.build(cfg).eval()
    assert models.config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    mu, logvar = model.posterior(torch.rand(2, 1, 28, 28))
    assert mu.shape == logvar.shape == (2, 4) and model.decode(mu).shape == (2, 1, 28, 28)
    _round_trip(model)
    assert not BACKBONES["layerstack"].trainable_from_config
    assert all(BACKBONES[b].trainable_from_config for b in ("mlp", "conv"))


@pytest.mark.parametrize(
    ("layers", "kind", "message"),
    [
        ({}, "ae", "the layerstack backbone is read from an imported model"),
        (_small_stack(), "ae", "the layer stack's encoder outputs 8 values per image; this kind of model needs 4"),
        (_small_stack(5), "vae", "layers.encoder ends in 10 values; expected 8"),
        (
            {**_small_stack(), "decoder": _small_stack()["decoder"][:2]},
            "vae",
            "layers.decoder ends in shape (4, 14, 14); expected the input shape (1, 28, 28)",
        ),
        (
            {**_small_stack(), "encoder": [{"type": "dense", "units": 4}]},
            "vae",
            "layers.encoder[0] (dense): a dense layer needs a vector input (flatten first), got 28x28x1",
        ),
        ({**_small_stack(), "encoder": [{"type": "lstm"}]}, "vae", "unknown layer type 'lstm'"),
        (
            {**_small_stack(), "encoder": [{"type": "flatten"}, {"type": "dense", "units": 2**20}]},
            "vae",
            "layers.encoder has 823132160 weights; at most 134217728 are supported",
        ),
    ],
)
def test_layerstack_configs_are_checked(layers, kind, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        cfg = models.config_class(kind)(input_shape=(1, 28, 28), latent_dim=4, backbone="layerstack", layers=layers)
        models.build(cfg)  # what the kind needs of the encoder is known when the model is built


def test_same_padding_and_transposed_windows_follow_tensorflow():
    assert layerstack.same_padding(28, 3, 2) == (14, 0, 1)  # the odd pixel goes after
    assert layerstack.same_padding(64, 4, 2) == (32, 1, 1)
    assert layerstack.same_padding(7, 2, 2) == (4, 0, 1)
    assert layerstack.transpose_window(7, 3, 2, "same", None) == (14, 0)  # full 15, the extra row cut at the end
    assert layerstack.transpose_window(7, 4, 2, "same", None) == (14, 1)
    assert layerstack.transpose_window(7, 3, 2, "valid", None) == (15, 0)
    assert layerstack.transpose_window(7, 1, 2, "valid", None) == (14, 0)  # longer than the full 13: zeros after
    assert layerstack.transpose_window(14, 5, 2, "same", 1) == (28, 1)


# --- with Keras itself (the test extra; torch backend) ----------------------------------------------------------

# Keras' torch backend calls np.array(tensor, copy=False), which numpy 2 warns about
quiet_keras = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras", reason="keras is not installed (it is in the test extra)")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras runs on {keras.backend.backend()}; these tests use its torch backend")

    @keras.saving.register_keras_serializable(package="Custom", name="Sampling")
    class Sampling(keras.layers.Layer):
        def call(self, inputs):
            mean, log_var = inputs
            return mean + keras.ops.exp(0.5 * log_var) * keras.random.normal(keras.ops.shape(mean))

    return keras


def _keras_predict(km, x: np.ndarray, vae: bool) -> np.ndarray:
    x = x.astype(np.float32)
    if vae:  # deterministic: decode the mean
        mean = km.get_layer("encoder").predict(x, verbose=0)[0]
        return km.get_layer("decoder").predict(mean, verbose=0)
    return km.predict(x, verbose=0)


@quiet_keras
@pytest.mark.parametrize("case", list(CASES))
def test_keras_reads_our_fixtures_and_its_own_saves_import_exactly(tmp_path, keras, case):
    written = kf.save(tmp_path / "ours.keras", CASES[case]())
    x = _images(written)
    km = keras.saving.load_model(tmp_path / "ours.keras", compile=False)
    want = _keras_predict(km, x, case == "vae")
    reference = written.forward(x)
    assert np.abs(want - reference.reshape(want.shape)).max() <= TOL  # the fixture writer is faithful
    km.save(tmp_path / "theirs.keras")  # now a file as Keras writes it
    model, _ = _import(tmp_path / "theirs.keras")
    assert np.abs(_ours(model, x) - want.reshape(len(x), *written.input_shape)).max() <= TOL


def _randomise(km, seed: int = 0) -> None:
    """Random weights (Keras starts biases and batch statistics at 0 and 1), variances kept positive."""
    rng = np.random.default_rng(seed)
    for v in km.weights:
        value = rng.normal(0, 0.3, v.shape)
        v.assign(np.abs(value) + 0.5 if "variance" in v.path else value)


@quiet_keras
def test_models_built_with_keras_import_and_match_predict(tmp_path, keras):
    from keras import layers

    inputs = keras.Input((28, 28, 1))  # the keras.io denoising autoencoder, as written there
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(inputs)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
    x = layers.MaxPooling2D((2, 2), padding="same")(x)
    x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)
    denoiser = keras.Model(inputs, x)
    rgb = keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            layers.Conv2D(8, 3, strides=2, padding="same"),
            layers.BatchNormalization(),
            layers.LeakyReLU(),
            layers.Dropout(0.2),
            layers.Conv2D(16, 3, strides=2, padding="same", activation="gelu"),
            layers.Flatten(),
            layers.Dense(24, activation="softplus"),
            layers.Dense(16 * 16 * 16, activation="relu"),
            layers.Reshape((16, 16, 16)),
            layers.UpSampling2D(2, interpolation="bilinear"),
            layers.Conv2DTranspose(8, 4, strides=2, padding="same", activation="silu"),
            layers.Conv2D(3, 3, padding="same", activation="sigmoid"),
        ]
    )
    for name, km in (("denoiser", denoiser), ("rgb", rgb)):
        _randomise(km)
        km.save(tmp_path / f"{name}.keras")
        model, _ = _import(tmp_path / f"{name}.keras")
        images = np.random.default_rng(2).random((4, *km.input_shape[1:]))
        want = km.predict(images.astype(np.float32), verbose=0)
        assert np.abs(_ours(model, images) - want).max() <= TOL, name
        _round_trip(model)
