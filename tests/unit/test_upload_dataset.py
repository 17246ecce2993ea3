"""A model file rarely says what it was trained on: the importer tries every built-in dataset and keeps the one
the model reconstructs best, so a Fashion-MNIST model uploaded in any format opens on Fashion-MNIST, with the
runner-up's error said."""

import os

import numpy as np
import pytest
import torch
from torch import nn

from explorer.data import load_dataset, to_float
from explorer.ui import state
from tests import onnx_models as om

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _design_mlp() -> nn.Sequential:
    """The design source's PyTorch model: Linear 784-128-64-32 with ReLU, sigmoid output."""
    encoder = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU()
    )
    decoder = nn.Sequential(
        nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid()
    )
    return nn.Sequential(encoder, decoder)


@pytest.fixture(scope="module")
def fashion_mlp() -> nn.Sequential:
    """The design source's MLP, trained briefly on Fashion-MNIST (BCE, Adam), as a user would."""
    torch.manual_seed(0)
    model = _design_mlp()
    x = torch.from_numpy(to_float(load_dataset("fashion-mnist", "test").images[:8000])).flatten(1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(4):
        for i in range(0, len(x), 128):
            xb = x[i : i + 128]
            loss = nn.functional.binary_cross_entropy(model(xb), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _check(pending: state.PendingImport) -> None:
    assert pending.preview is not None and pending.preview_note.startswith("fashion-mnist"), pending.preview_note
    line = next(line for line in pending.lines if line.startswith("dataset:"))
    assert "fashion-mnist, inferred" in line and "next best" in line, pending.lines
    assert state.read_metadata(pending.data)["dataset"]["name"] == "fashion-mnist"


def test_a_state_dict_of_a_fashion_model_opens_on_fashion_mnist(tmp_path, fashion_mlp):
    path = tmp_path / "autoencoder.pt"
    torch.save(fashion_mlp.state_dict(), path)
    _check(state.prepare_import([(path.name, path.read_bytes())], {}))


def test_an_onnx_pair_of_a_fashion_model_opens_on_fashion_mnist(tmp_path, fashion_mlp):
    example = torch.rand(2, 1, 28, 28)
    encoder = om.export(fashion_mlp[0], example, tmp_path / "encoder.onnx")
    decoder = om.export(
        nn.Sequential(fashion_mlp[1], nn.Unflatten(1, (1, 28, 28))), torch.rand(2, 32), tmp_path / "decoder.onnx"
    )
    files = [(p.name, p.read_bytes()) for p in (encoder, decoder)]
    pending = state.prepare_import(files, {})
    _check(pending)
    # the same files give the same checkpoint (and so the same link) in any session
    assert state.sha256(state.prepare_import(files, {}).data) == state.sha256(pending.data)


def test_a_keras_file_of_a_fashion_model_opens_on_fashion_mnist(tmp_path, fashion_mlp):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras", reason="keras is not installed (it is in the test extra)")
    if keras.backend.backend() != "torch":
        pytest.skip("these tests use Keras' torch backend")
    from keras import layers

    # the design source's Keras model: Dense Sequential 784-128-64-32, the same weights as the PyTorch one
    km = keras.Sequential(
        [keras.Input((28, 28, 1)), layers.Flatten()]
        + [layers.Dense(n, activation="relu") for n in (128, 64, 32, 64, 128)]
        + [layers.Dense(784, activation="sigmoid"), layers.Reshape((28, 28, 1))]
    )
    linears = [m for m in fashion_mlp.modules() if isinstance(m, nn.Linear)]
    dense = [layer for layer in km.layers if isinstance(layer, layers.Dense)]
    for d, lin in zip(dense, linears):
        d.set_weights([lin.weight.detach().numpy().T, lin.bias.detach().numpy()])
    x = load_dataset("fashion-mnist", "test").images[:4]
    want = fashion_mlp(torch.from_numpy(to_float(x))).detach().numpy().reshape(4, 28, 28)
    got = np.asarray(km.predict(x[..., None] / 255.0, verbose=0)).reshape(4, 28, 28)
    assert np.abs(got - want).max() < 1e-4  # the Keras copy is the same model
    path = tmp_path / "autoencoder.keras"
    km.save(path)
    _check(state.prepare_import([(path.name, path.read_bytes())], {}))


def test_a_named_dataset_is_used_as_asked(tmp_path, fashion_mlp):
    path = tmp_path / "autoencoder.pt"
    torch.save(fashion_mlp.state_dict(), path)
    pending = state.prepare_import([(path.name, path.read_bytes())], {"dataset": "mnist"})
    assert pending.preview_note.startswith("mnist")
    assert any(line.startswith("dataset: mnist (your choice)") for line in pending.lines), pending.lines
