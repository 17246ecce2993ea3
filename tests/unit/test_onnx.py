"""ONNX encoder + decoder pairs: imported from files that torch.onnx.export wrote, stored in one checkpoint, and
run by onnxruntime with PyTorch's outputs; hostile graphs refused with their reasons, in the child process."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_models as om
import pytest
import torch

from explorer import models
from explorer.checkpoint import checkpoint_bytes, load_checkpoint
from explorer.errors import CheckpointError, ConfigError, DatasetError
from explorer.importers.onnx import import_onnx
from explorer.importers.options import ImportOptions, OptionError
from explorer.models.onnx import OnnxAE
from explorer.untrusted import safetensors_header, sandbox

TOL = 1e-5


def images(shape: tuple[int, int, int], n: int = 16) -> np.ndarray:
    return np.random.default_rng(0).random((n, *shape), dtype=np.float32)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def round_trip(model: OnnxAE) -> OnnxAE:
    loaded = load_checkpoint(checkpoint_bytes(model))
    assert isinstance(loaded, OnnxAE)
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    return loaded


@pytest.fixture(scope="session")
def vae(tmp_path_factory):
    return om.conv_vae(tmp_path_factory.mktemp("vae"))


@pytest.fixture(scope="session")
def mlp(tmp_path_factory):
    return om.mlp(tmp_path_factory.mktemp("mlp"))


@pytest.fixture(scope="session")
def mlp_batch_one(tmp_path_factory):
    return om.mlp(tmp_path_factory.mktemp("mlp1"), dynamic_batch=False)


@pytest.fixture(scope="session")
def rgb(tmp_path_factory):
    return om.rgb64(tmp_path_factory.mktemp("rgb"))


@pytest.fixture(scope="session")
def rgb_channels_last(tmp_path_factory):
    return om.rgb64(tmp_path_factory.mktemp("rgb-nhwc"), channels_last=True)


# --- round trips ------------------------------------------------------------------------------------------


def test_conv_vae_with_batchnorm_round_trip(vae):
    # given decoder first: the importer tells them apart from their shapes
    model, report = import_onnx(vae.files(swap=True), ImportOptions(), images)
    assert (model.kind, model.latent_dim, model.input_shape) == ("onnx", 16, (1, 28, 28))
    assert model.config.variational and model.has_prior and model.encoder_heads == 2
    assert model.config.encoder_outputs == ("mu", "logvar")
    assert any("took vae_encoder.onnx as the encoder" in r for r in report.remarks)
    assert report.source == "onnx" and model.config.notes["imported_from"] == "onnx"
    loaded = round_trip(model)

    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        mu, logvar = vae.encoder(loaded.to_body(x))
        z, stats = loaded.image_stats(x)
        assert max_diff(z, mu) < TOL
        assert max_diff(loaded.codes(x)[1], logvar) < TOL
        assert max_diff(loaded.decode_logits(mu), vae.decoder(mu)) < TOL
    sigma = (0.5 * logvar.clamp(-30, 20)).exp().mean(1)
    assert max_diff(stats["sigma"], sigma) < TOL and stats["kl"].shape == (7,)
    assert loaded.summary_stats == ("kl",)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    s1, s2 = loaded.sample_prior(5, 0.5, generator=g1), loaded.sample_prior(5, 0.5, generator=g2)
    assert s1.shape == (5, 16) and torch.equal(s1, s2)
    pixels = loaded.decode(s1)
    assert pixels.shape == (5, 1, 28, 28) and 0 <= pixels.min() and pixels.max() <= 1


def test_mlp_with_flat_vectors_round_trip(mlp):
    model, report = import_onnx(mlp.files(), ImportOptions(), images)
    assert (model.latent_dim, model.input_shape) == (32, (1, 28, 28))
    assert (model.config.encoder_layout, model.config.decoder_layout) == ("flat", "flat")
    assert not model.config.variational and not model.has_prior and model.summary_stats == ()
    shape = next(d for d in report.decisions if d.name == "input_shape")
    assert (shape.value, shape.source) == ("1x28x28", "assumed")  # 784 values: the square image
    loaded = round_trip(model)
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        z = mlp.encoder(loaded.to_body(x).flatten(1))
        assert max_diff(loaded.encode(x), z) < TOL
        assert max_diff(loaded.decode_logits(z), mlp.decoder(z).reshape(7, 1, 28, 28)) < TOL
    with pytest.raises(ConfigError, match="cannot be trained here"):
        loaded.loss(x)
    with pytest.raises(ConfigError, match="no prior"):
        loaded.sample_prior(2)


@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_64x64_rgb_conv_round_trip(rgb, rgb_channels_last, channels_last):
    pair = rgb_channels_last if channels_last else rgb
    model, _ = import_onnx(pair.files(), ImportOptions(), images)
    assert (model.latent_dim, model.input_shape) == (24, (3, 64, 64))
    layout = "nhwc" if channels_last else "nchw"
    assert (model.config.encoder_layout, model.config.decoder_layout) == (layout, layout)
    loaded = round_trip(model)
    x = torch.rand(7, 3, 64, 64)
    with torch.no_grad():
        body = loaded.to_body(x)
        z = pair.encoder(body.permute(0, 2, 3, 1) if channels_last else body)
        out = pair.decoder(z)
        assert max_diff(loaded.encode(x), z) < TOL
        assert max_diff(loaded.decode_logits(z), out.permute(0, 3, 1, 2) if channels_last else out) < TOL
        assert loaded.decode(z).shape == (7, 3, 64, 64)


def test_fixed_batch_of_one_runs_any_batch(mlp_batch_one):
    model, report = import_onnx(mlp_batch_one.files(), ImportOptions(), images)
    assert (model.config.encoder_batch, model.config.decoder_batch) == (1, 1)
    assert any("takes exactly 1 input(s) per run" in r for r in report.remarks)
    loaded = round_trip(model)
    x = torch.rand(7, 1, 28, 28)
    with torch.no_grad():
        z = mlp_batch_one.encoder(loaded.to_body(x).flatten(1))
        assert max_diff(loaded.encode(x), z) < TOL
        assert max_diff(loaded.decode_logits(z), mlp_batch_one.decoder(z).reshape(7, 1, 28, 28)) < TOL


def test_imported_kind_is_not_offered_for_training():
    assert "onnx" in models.kinds() and "onnx" not in models.trainable_kinds()


# --- what a graph cannot say ------------------------------------------------------------------------------

EXPECTED_SCALE = {
    "ends-in-sigmoid": ("identity", "unit"),
    "returns-logits": ("sigmoid", "unit"),
    "tanh-trained-returns-logits": ("tanh", "symmetric"),
    "ends-in-tanh": ("identity", "symmetric"),
}


@pytest.fixture(scope="session")
def scales(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scales")
    return {variant: om.pixel_scale(folder, variant) for variant in om.PIXEL_SCALES}


@pytest.mark.parametrize("variant", list(EXPECTED_SCALE))
def test_pixel_scale_is_inferred_from_sample_images(scales, variant):
    model, report = import_onnx(scales[variant].files(), ImportOptions(), om.exact_images)
    assert (model.config.output_activation, model.config.input_range) == EXPECTED_SCALE[variant]
    for decision in (d for d in report.decisions if d.name in ("output_activation", "input_range")):
        assert decision.source == "inferred" and decision.runner_up is not None
        assert decision.error is not None and decision.runner_up_error is not None
        assert decision.error < 1e-4 and decision.runner_up_error > 100 * decision.error
        assert "next best" in decision.describe()
    x = torch.from_numpy(om.exact_images((1, 28, 28), 8))
    assert float((model.reconstruct(x) - x).pow(2).mean()) < 1e-5  # float32 logits of near-saturated pixels


def test_without_sample_images_the_decoder_range_decides(scales):
    def no_images(shape):
        raise DatasetError(f"no images of {shape}")

    ends_in_sigmoid, _ = import_onnx(scales["ends-in-sigmoid"].files(), ImportOptions(), no_images)
    ends_in_tanh, _ = import_onnx(scales["ends-in-tanh"].files(), ImportOptions(), no_images)
    logits, report = import_onnx(scales["returns-logits"].files(), ImportOptions(), no_images)
    assert (ends_in_sigmoid.config.output_activation, ends_in_sigmoid.config.input_range) == ("identity", "unit")
    assert (ends_in_tanh.config.output_activation, ends_in_tanh.config.input_range) == ("identity", "symmetric")
    assert (logits.config.output_activation, logits.config.input_range) == ("sigmoid", "unit")
    assert {d.name: d.source for d in report.decisions}["output_activation"] == "assumed"


def test_no_sample_images_of_the_size_is_not_an_error(scales):
    def none_of_this_size(shape):
        raise DatasetError("no built-in dataset gives sample images of 1x28x28")

    model, report = import_onnx(scales["ends-in-sigmoid"].files(), ImportOptions(), none_of_this_size)
    assert model.config.output_activation == "identity"
    assert "no sample images to try choices on (no built-in dataset gives sample images of 1x28x28)" in report.remarks
    with pytest.raises(DatasetError):  # but a dataset the user named must serve
        import_onnx(scales["ends-in-sigmoid"].files(), ImportOptions(dataset="digits"), none_of_this_size)


def test_user_choices_win(scales, vae):
    options = ImportOptions(output_activation="sigmoid", input_range="symmetric")
    model, report = import_onnx(scales["ends-in-sigmoid"].files(), options, om.exact_images)
    assert (model.config.output_activation, model.config.input_range) == ("sigmoid", "symmetric")
    assert {d.name: d.source for d in report.decisions}["output_activation"] == "user"

    plain, report = import_onnx(vae.files(), dataclasses.replace(options, kind="ae"), images)
    assert not plain.config.variational and not plain.has_prior
    assert {d.name: d.source for d in report.decisions}["kind"] == "user"


@pytest.mark.parametrize(
    ("options", "option", "message"),
    [
        (
            ImportOptions(kind="vae"),
            "kind",
            "holds the latent alone, with no log-variance, so the model cannot be a VAE",
        ),
        (ImportOptions(input_shape=(3, 32, 32)), "input_shape", "the encoder takes images of 3x64x64, not the 3x32x32"),
        (ImportOptions(activation="relu"), "activation", "carries its own activations; leave the activation unset"),
    ],
)
def test_options_a_graph_contradicts_are_refused(rgb, options, option, message):
    with pytest.raises(OptionError, match=message) as caught:
        import_onnx(rgb.files(), options, images)
    assert caught.value.option == option


def test_graphs_that_are_not_a_pair_are_refused(vae, rgb):
    with pytest.raises(CheckpointError, match="these two graphs are not an encoder and its decoder"):
        import_onnx([vae.files()[0], rgb.files()[1]], ImportOptions(), images)
    with pytest.raises(CheckpointError, match="comes as two files, an encoder and a decoder"):
        import_onnx(vae.files()[:1], ImportOptions(), images)


# --- hostile files ----------------------------------------------------------------------------------------

HOSTILE = {
    "external-data": (
        om.external_data,
        "the weights are not inside the file: 1 tensor(s) refer to external data (e.g. 'w' in '../../etc/passwd'), "
        "and nothing outside the upload is read; export with the weights inside the file: "
        "torch.onnx.export(..., external_data=False)",
    ),
    "custom-domain": (
        om.custom_domain,
        "the graph uses the operator 'Backdoor' of the custom domain 'com.evil', which onnxruntime does not ship",
    ),
    "absurd-shape": (
        om.absurd_shape,
        "tensor 'w' declares the shape 1048576 x 1048576 (1,099,511,627,776 values); at most 268,435,456 values",
    ),
    "many-nodes": (om.many_nodes, "the graph has more than 20,000 operators"),
    "zip": (om.zip_archive, "this is a zip archive (a .keras or torch.save file?), not an ONNX graph"),
    "future-opset": (om.future_opset, "the graph needs opset 99 of the ONNX operators, newer than onnxruntime"),
    "unknown-operator": (om.unknown_operator, "the graph uses an operator named TotallyNewOp"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_graphs_are_refused_with_their_reason(mlp, case):
    build, message = HOSTILE[case]
    with pytest.raises(CheckpointError) as caught:
        import_onnx([("evil.onnx", build()), mlp.files()[1]], ImportOptions(), images)
    text = str(caught.value)
    assert text.startswith("evil.onnx: ") and message in text
    assert " at 0x" not in text and "Traceback" not in text and "onnxruntime_src" not in text


def test_truncated_graph_is_refused(vae):
    name, data = vae.files()[0]
    with pytest.raises(CheckpointError, match="not a readable ONNX file: it is truncated or corrupt"):
        import_onnx([(name, data[: len(data) // 2]), vae.files()[1]], ImportOptions(), images)


def test_tampered_checkpoint_is_refused_as_it_loads(mlp):
    model, _ = import_onnx(mlp.files(), ImportOptions(), images)
    data = bytearray(checkpoint_bytes(model))
    header, start = safetensors_header(bytes(data))
    begin, end = header["encoder_graph"]["data_offsets"]
    data[start + (begin + end) // 2] ^= 0xFF  # one byte inside the embedded encoder graph
    with pytest.raises(CheckpointError, match="the encoder graph inside this checkpoint does not match the SHA-256"):
        load_checkpoint(bytes(data))


def test_a_graph_is_checked_once_per_process(monkeypatch):
    runs = []
    real = sandbox._run
    monkeypatch.setattr(sandbox, "_run", lambda *a, **k: runs.append(a[0]) or real(*a, **k))
    graph = om.tiny_relu("checked-once")
    first = sandbox.check_onnx(graph, label="a.onnx")
    assert sandbox.check_onnx(graph, label="b.onnx") == first and runs == ["onnx"]
    assert first["inputs"] == [{"name": "x", "shape": [1, 4]}] and first["outputs"][0]["run_shape"] == [1, 4]
    for _ in range(2):  # a refusal is not remembered
        with pytest.raises(CheckpointError):
            sandbox.check_onnx(om.custom_domain(), label="c.onnx")
    assert runs == ["onnx"] * 3


def test_a_loaded_checkpoint_is_checked_in_the_child_before_it_runs(mlp, monkeypatch):
    model, _ = import_onnx(mlp.files(), ImportOptions(), images)
    data = checkpoint_bytes(model)
    runs = []
    real = sandbox._run
    monkeypatch.setattr(sandbox, "_run", lambda *a, **k: runs.append(a[0]) or real(*a, **k))
    monkeypatch.setattr(sandbox, "_ONNX_CHECKED", {})  # a fresh process: nothing checked yet
    loaded = load_checkpoint(data)
    assert runs == []  # loading checks the digests only
    z = loaded.encode(torch.rand(3, 1, 28, 28))
    assert runs == ["onnx"]
    loaded.decode(z)
    loaded.decode(z)
    assert runs == ["onnx", "onnx"]


def test_a_hostile_graph_behind_a_matching_digest_never_runs(mlp):
    model, _ = import_onnx(mlp.files(), ImportOptions(), images)
    forged = OnnxAE.from_graphs(model.config, encoder=om.custom_domain(), decoder=mlp.files()[1][1])
    loaded = load_checkpoint(checkpoint_bytes(forged))  # the digests match the bytes: it loads
    with pytest.raises(CheckpointError, match="the encoder graph: the graph uses the operator 'Backdoor'"):
        loaded.encode(torch.rand(2, 1, 28, 28))
