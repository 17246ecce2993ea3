"""What a state_dict leaves open is worked out from data: the right activation and pixel range win, by a margin.

Each model is a plain PyTorch MLP trained here for a second on scikit-learn's 8x8 digits (64 inputs, which the
importer reads as 1x8x8 and samples digits for), so that the choice it was trained with measurably reconstructs
better than the others. Files are bare safetensors: no loader process, so the tests stay fast.
"""

import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save
from torch import nn

from explorer.data import load_dataset, to_float
from explorer.errors import DatasetError
from explorer.importers import Decision, ImportOptions, OptionError, describe, import_files, import_model
from explorer.importers.infer import (
    CANDIDATES,
    infer_choices,
    reconstruction_preview,
    sample_dataset,
    sample_images,
    settle_choices,
    with_choices,
)

ACTS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh, "identity": nn.Identity, "sigmoid": nn.Sigmoid}
OUTPUTS = {"sigmoid": torch.sigmoid, "tanh": torch.tanh}
TOL = 1e-5


class DigitsAE(nn.Module):
    """64-48-24-8 and back, as a user would write it; ``symmetric`` models see pixels in [-1, 1]."""

    def __init__(self, hidden: str, latent: str, output: str, symmetric: bool):
        super().__init__()
        self.symmetric, self.output = symmetric, output
        act = ACTS[hidden]
        self.encoder = nn.Sequential(
            nn.Linear(64, 48), act(), nn.Linear(48, 24), act(), nn.Linear(24, 8), ACTS[latent]()
        )
        self.decoder = nn.Sequential(nn.Linear(8, 24), act(), nn.Linear(24, 48), act(), nn.Linear(48, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] in, pixels in [0, 1] out, (B, 1, 8, 8)."""
        body = 2 * x - 1 if self.symmetric else x
        out = OUTPUTS[self.output](self.decoder(self.encoder(body.flatten(1))))
        return ((out + 1) / 2 if self.symmetric else out).view(-1, 1, 8, 8)


def train(hidden="relu", latent="identity", output="sigmoid", symmetric=False, steps=1500) -> DigitsAE:
    torch.manual_seed(0)
    model = DigitsAE(hidden, latent, output, symmetric)
    x = torch.from_numpy(to_float(load_dataset("digits", "train").images))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (64,))]
        loss = (model(batch) - batch).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def as_file(model: nn.Module) -> list[tuple[str, bytes]]:
    return [("digits-ae.safetensors", st_save({k: v.contiguous() for k, v in model.state_dict().items()}))]


def decisions(model) -> dict[str, Decision]:
    known = {"name", "value", "source", "runner_up", "error", "runner_up_error"}
    return {d["name"]: Decision(**{k: v for k, v in d.items() if k in known}) for d in model.config.notes["decisions"]}


def same_reconstructions(model, src: nn.Module) -> float:
    x = torch.from_numpy(sample_images("digits", (1, 8, 8)))
    with torch.no_grad():
        return float((model.reconstruct(x) - src(x)).abs().max())


@pytest.fixture(scope="module")
def relu_latent():
    return train(latent="relu")


def test_relu_latent_is_told_from_identity_by_a_margin(relu_latent):
    model = import_model(as_file(relu_latent))
    cfg = model.config
    assert (cfg.activation, cfg.latent_activation, cfg.output_activation, cfg.input_range) == (
        "relu",
        "relu",
        "sigmoid",
        "unit",
    )
    latent = decisions(model)["latent_activation"]
    assert latent.source == "inferred" and latent.runner_up == "identity"
    assert latent.runner_up_error > 1.3 * latent.error  # the margin is measured, and clear
    assert same_reconstructions(model, relu_latent) <= TOL
    text = latent.describe()
    assert text.startswith("latent activation: relu, inferred") and "next best identity" in text and "x higher" in text
    assert any(line.startswith("latent activation: relu, inferred") for line in describe(model))


def test_tanh_output_on_symmetric_pixels_is_detected():
    src = train(output="tanh", symmetric=True)
    model = import_model(as_file(src))
    assert (model.config.output_activation, model.config.input_range) == ("tanh", "symmetric")
    found = decisions(model)
    assert (
        found["input_range"].runner_up == "unit"
        and found["input_range"].runner_up_error > 1.3 * found["input_range"].error
    )
    assert same_reconstructions(model, src) <= TOL


def test_sigmoid_on_unit_pixels_is_detected():
    src = train()
    model = import_model(as_file(src))
    assert (model.config.output_activation, model.config.input_range, model.config.latent_activation) == (
        "sigmoid",
        "unit",
        "identity",
    )
    assert same_reconstructions(model, src) <= TOL


def test_hidden_elu_is_told_from_relu():
    src = train(hidden="elu")
    model = import_model(as_file(src))
    hidden = decisions(model)["activation"]
    assert hidden.value == "elu" and hidden.runner_up_error > 1.05 * hidden.error
    assert same_reconstructions(model, src) <= TOL


def test_an_explicit_option_wins_over_the_data(relu_latent):
    model, report = import_files(as_file(relu_latent), ImportOptions(latent_activation="identity"))
    assert model.config.latent_activation == "identity"
    found = {d.name: d for d in report.decisions}
    assert found["latent_activation"].source == "user" and found["latent_activation"].error is None
    assert found["activation"].source == "inferred" and found["output_activation"].value == "sigmoid"
    assert "latent activation: identity (your choice)" in describe(model)


def test_inference_on_images_the_caller_gives(relu_latent):
    calls = []

    def sample(shape):
        calls.append(shape)
        return sample_images("digits", shape)[:64]

    model, report = import_files(as_file(relu_latent), ImportOptions(), sample=sample)
    assert calls == [(1, 8, 8)] and model.config.latent_activation == "relu"
    assert any("on 64 sample images" in r for r in report.remarks)


def test_search_covers_every_combination_and_ranks_runner_ups(relu_latent):
    model = import_model(as_file(relu_latent), activation="relu", latent_activation="identity")
    images = sample_images("digits", (1, 8, 8))
    chosen, found = infer_choices(model, images, ["latent_activation", "input_range"])
    assert chosen == {"latent_activation": "relu", "input_range": "unit"}
    assert [d.name for d in found] == ["latent_activation", "input_range"]
    for d in found:
        assert d.runner_up in CANDIDATES[d.name] and d.runner_up != d.value and d.runner_up_error >= d.error
    assert infer_choices(model, images, []) == ({}, [])


def test_candidates_share_the_weights(relu_latent):
    model = import_model(as_file(relu_latent))
    other = with_choices(model, {"activation": "elu"})
    assert other.config.activation == "elu" and model.config.activation == "relu"
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(model.parameters(), other.parameters()))


def test_without_sample_images_the_conventions_are_assumed_and_said(relu_latent, monkeypatch):
    model = import_model(as_file(relu_latent))

    def none_fit(shape):
        raise DatasetError("no images of that size")

    settled, found, remarks = settle_choices(model, ["latent_activation"], sample=none_fit)
    assert settled is model and found == [Decision("latent_activation", model.config.latent_activation, "assumed")]
    assert "no images of that size" in remarks[0] and "set these choices yourself" in remarks[0]
    # a dataset the user asked for that does not fit is refused instead, naming the option
    with pytest.raises(OptionError, match="choose another dataset") as info:
        settle_choices(model, ["latent_activation"], dataset="digits", sample=none_fit)
    assert info.value.option == "dataset"


def test_sample_images_by_shape_seeded_and_fitted():
    title, grey = sample_dataset(None, (1, 8, 8))
    assert title == "digits:test" and grey.shape == (256, 1, 8, 8) and grey.dtype == np.float32
    assert 0.0 <= grey.min() and grey.max() <= 1.0 and not grey.flags.writeable  # cached: shared by every caller
    copy = sample_images(None, (1, 8, 8))
    assert np.array_equal(copy, grey) and copy.flags.writeable
    rgb = sample_images(None, (3, 32, 32))
    assert rgb.shape == (256, 3, 32, 32) and np.allclose(rgb[:, 0], rgb[:, 1])  # grey images made RGB
    assert sample_dataset(None, (1, 28, 28))[0].startswith(("mnist", "fashion-mnist"))
    with pytest.raises(DatasetError, match=r"no built-in dataset gives sample images of 1x500x500 \(fashion-mnist: .*"):
        sample_images(None, (1, 500, 500))
    with pytest.raises(DatasetError, match="unknown dataset"):
        sample_images("cifar-100", (3, 32, 32))


def test_reconstruction_preview(relu_latent):
    model = import_model(as_file(relu_latent))
    images = sample_images(None, model.input_shape)
    originals, recon, errors = reconstruction_preview(model, images, n=6)
    assert originals.shape == recon.shape == (6, 1, 8, 8) and errors.shape == (6,)
    assert np.allclose(errors, ((originals - recon) ** 2).reshape(6, -1).mean(1), atol=1e-7)
