"""Importers: foreign model files become explorer models that reconstruct exactly as the originals do.

Every fixture is written here, in tmp_path. The .keras files are built with h5py in the layout Keras 3
writes (Keras itself is not needed). Hostile files must be refused without running anything.
"""

import argparse
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save as st_save
from torch import nn

from explorer import CheckpointError, ExplorerError, models, untrusted
from explorer.checkpoint import load_checkpoint
from explorer.cli import import_model as import_command
from explorer.data import load_dataset, to_float
from explorer.importers import OptionError, describe, detect_format, import_model, torch_state
from explorer.importers.torch_state import load_state_dict_safely, natural_order

TOL = 1e-5
# what the explorer builds by default: for untrained weights, whose reconstructions no choice makes better
CONVENTION = dict(activation="relu", latent_activation="identity", output_activation="sigmoid", input_range="unit")


# --- the design source's model ---------------------------------------------------------------------------


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 32)

    def forward(self, x):
        x = x.view(-1, 784)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return F.relu(self.fc3(x))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 128)
        self.fc3 = nn.Linear(128, 784)

    def forward(self, z):
        z = F.relu(self.fc1(z))
        z = F.relu(self.fc2(z))
        return torch.sigmoid(self.fc3(z))


def design_model(steps: int = 1000) -> nn.Sequential:
    """Trained for a second on MNIST, so that its ReLU latent matters to its reconstructions."""
    torch.manual_seed(1)
    model = nn.Sequential(Encoder(), Decoder())
    x = torch.from_numpy(to_float(load_dataset("mnist", "train").images))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (64,))]
        loss = F.binary_cross_entropy(model(batch), batch.view(-1, 784))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


@pytest.fixture(scope="module")
def design():
    return design_model()


@pytest.fixture(scope="module")
def design_file(tmp_path_factory, design):
    path = tmp_path_factory.mktemp("design") / "autoencoder.pt"
    torch.save(design.state_dict(), path)
    return path


def test_design_source_state_dict_reconstructs_the_same_with_no_options(design, design_file):
    model = import_model([(design_file.name, design_file.read_bytes())])
    assert model.kind == "ae" and model.config.backbone == "mlp"
    assert model.config.hidden == (128, 64) and model.latent_dim == 32 and model.input_shape == (1, 28, 28)
    assert (model.config.activation, model.config.latent_activation, model.config.output_activation) == (
        "relu",
        "relu",
        "sigmoid",
    )
    x = torch.rand(64, 1, 28, 28)
    with torch.no_grad():
        d = max_diff(model.reconstruct(x), design(x).view(-1, 1, 28, 28))
        assert max_diff(model.encode(x), design[0](x)) <= TOL
    assert d <= TOL
    notes = model.config.notes
    assert notes["imported_from"] == "torch state_dict" and notes["files"] == ["autoencoder.pt"]
    assert notes["shapes"] == {"encoder": "784-128-64-32", "decoder": "32-64-128-784"}
    sources = {d["name"]: d["source"] for d in notes["decisions"]}
    assert sources == {
        "kind": "file",
        "input_shape": "inferred",
        "activation": "inferred",
        "latent_activation": "inferred",
        "output_activation": "inferred",
        "input_range": "inferred",
        "dataset": "inferred",  # tried on every built-in dataset, the best kept
    }
    lines = describe(model)
    assert "encoder 784-128-64-32; decoder 32-64-128-784" in lines
    assert any(line.startswith("latent activation: relu, inferred") and "next best identity" in line for line in lines)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    import_command.add_arguments(parser)
    return import_command.run(parser.parse_args(argv))


def test_cli_imports_the_design_source_model_with_no_flags(design, design_file, tmp_path):
    out = tmp_path / "x.safetensors"
    done = subprocess.run(
        [sys.executable, "-m", "explorer", "import", str(design_file), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "latent activation: relu, inferred" in done.stdout and f"wrote {out}" in done.stdout
    model = load_checkpoint(out)
    assert model.info["dataset"] == {} and model.config.notes["imported_from"] == "torch state_dict"
    x = torch.rand(32, 1, 28, 28)
    with torch.no_grad():
        assert max_diff(model.reconstruct(x), design(x).view(-1, 1, 28, 28)) <= TOL


def test_cli_writes_a_checkpoint_that_loads(design, design_file, tmp_path, capsys):
    out = tmp_path / "imported.safetensors"
    assert _cli([str(design_file), "--out", str(out), "--latent-activation", "relu", "--dataset", "mnist"]) == 0
    printed = capsys.readouterr().out
    assert "784-128-64-32" in printed and "latent activation: relu (your choice)" in printed and str(out) in printed
    model = load_checkpoint(out)
    assert model.info["training"]["device"] == "imported"
    assert model.info["training"]["source"] == "torch state_dict: autoencoder.pt"
    assert model.info["dataset"] == {"name": "mnist"} and model.info["metrics"] == {}
    x = torch.rand(32, 1, 28, 28)
    with torch.no_grad():
        assert max_diff(model.reconstruct(x), design(x).view(-1, 1, 28, 28)) <= TOL


def test_cli_errors_propagate(tmp_path):
    with pytest.raises(CheckpointError, match="no model file at"):
        _cli([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o.safetensors")])
    with pytest.raises(SystemExit):  # argparse rejects a malformed shape itself
        _cli(["x.pt", "--out", "o.safetensors", "--input-shape", "28,28"])


def test_separate_encoder_and_decoder_files_in_either_order(design):
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        want = design(x).view(-1, 1, 28, 28)
    enc, dec = torch_bytes(design[0].state_dict()), torch_bytes(design[1].state_dict())
    model = import_model([("enc.pt", enc), ("dec.pt", dec)])
    with torch.no_grad():
        assert max_diff(model.reconstruct(x), want) <= TOL
    # the same split from safetensors files given decoder first (no loader process: keeps the test fast)
    enc, dec = st_save(design[0].state_dict()), st_save(design[1].state_dict())
    model = import_model([("dec.safetensors", dec), ("enc.safetensors", enc)])
    assert any("enc.safetensors as the encoder" in r for r in model.config.notes["remarks"])
    with torch.no_grad():
        assert max_diff(model.reconstruct(x), want) <= TOL


class PlainAE(nn.Module):
    def __init__(self, d: int = 784):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, 96), nn.Tanh(), nn.Linear(96, 12))
        self.decoder = nn.Sequential(nn.Linear(12, 96), nn.Tanh(), nn.Linear(96, d))

    def forward(self, x):
        return torch.sigmoid(self.decoder(self.encoder(x))).view(x.shape)


def test_plain_sequential_layout_as_bare_safetensors(tmp_path):
    torch.manual_seed(2)
    src = PlainAE().eval()
    # safetensors stores keys sorted (decoder before encoder): the importer must still find the encoder first
    data = st_save({k: v.contiguous() for k, v in src.state_dict().items()})
    assert detect_format("plain.safetensors", data) == "safetensors"
    model = import_model([("plain.safetensors", data)], **CONVENTION | {"activation": "tanh"})
    assert model.config.hidden == (96,) and model.latent_dim == 12 and model.config.activation == "tanh"
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert max_diff(model.reconstruct(x), src(x)) <= TOL


def test_natural_order_puts_fc10_after_fc2_and_encoder_first():
    keys = ["decoder.0.weight", "fc10.weight", "fc2.weight", "encoder.0.weight", "encoder.10.weight"]
    assert natural_order(keys) == [
        "encoder.0.weight",
        "encoder.10.weight",
        "fc2.weight",
        "fc10.weight",
        "decoder.0.weight",
    ]


def test_own_conv_autoencoder_round_trip():
    cfg = models.config_class("ae")(
        input_shape=(1, 28, 28), backbone="conv", hidden=(8, 16), dense=32, latent_dim=6, activation="elu"
    )
    torch.manual_seed(3)
    src = models.build(cfg).eval()
    model = import_model([("conv.pt", torch_bytes(src.state_dict()))], **CONVENTION | {"activation": "elu"})
    got = model.config
    assert (got.backbone, got.hidden, got.dense, got.latent_dim, got.input_shape) == (
        "conv",
        (8, 16),
        32,
        6,
        (1, 28, 28),
    )
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert max_diff(model.reconstruct(x), src.reconstruct(x)) <= TOL


def test_other_conv_layouts_are_refused_with_the_layers_found():
    net = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Linear(10, 4), nn.Linear(4, 10))
    data = st_save({k: v.contiguous() for k, v in net.state_dict().items()})
    with pytest.raises(CheckpointError, match=r"not one the explorer can rebuild.*8x1x3x3.*ONNX"):
        import_model([("conv.safetensors", data)])


class HeadsVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 64)
        self.fc_mu = nn.Linear(64, 8)
        self.fc_logvar = nn.Linear(64, 8)
        self.dec1 = nn.Linear(8, 64)
        self.dec2 = nn.Linear(64, 784)

    def encode(self, x):
        return self.fc_mu(F.relu(self.fc1(x.flatten(1))))

    def decode(self, z):
        return torch.sigmoid(self.dec2(F.relu(self.dec1(z)))).view(-1, 1, 28, 28)


def test_vae_with_separate_mean_and_logvar_heads_is_found_from_the_shapes():
    torch.manual_seed(4)
    src = HeadsVAE().eval()
    data = st_save({k: v.contiguous() for k, v in src.state_dict().items()})
    with pytest.raises(OptionError, match="look like a VAE's mean and log-variance heads: choose the kind vae") as info:
        import_model([("vae.safetensors", data)], kind="ae")
    assert info.value.option == "kind"
    model = import_model([("vae.safetensors", data)], **CONVENTION)
    assert model.kind == "vae" and model.latent_dim == 8
    assert "kind: vae (from the file)" in describe(model)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert max_diff(model.encode(x), src.encode(x)) <= TOL
        assert max_diff(model.reconstruct(x), src.decode(src.encode(x))) <= TOL
        _, logvar = model.posterior(x)
        assert max_diff(logvar, src.fc_logvar(F.relu(src.fc1(x.flatten(1))))) <= TOL


def test_own_mlp_vae_round_trip():
    torch.manual_seed(5)
    src = models.build(models.config_class("vae")(hidden=(64,), latent_dim=6)).eval()
    model = import_model([("vae.safetensors", st_save(src.state_dict()))], **CONVENTION)
    assert model.kind == "vae"  # the encoder outputs twice what the decoder takes
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert max_diff(model.reconstruct(x), src.reconstruct(x)) <= TOL
        assert max_diff(model.posterior(x)[1], src.posterior(x)[1]) <= TOL


def test_sae_is_not_importable(design_file):
    with pytest.raises(OptionError, match="cannot become a model of kind sae; choose one of ae, dae, vae"):
        import_model([("m.safetensors", st_save({"w.weight": torch.zeros(2, 2)}))], kind="sae")


def test_own_checkpoint_is_loaded_as_is(tmp_path):
    from explorer.checkpoint import checkpoint_bytes

    src = models.build(models.config_class("ae")(hidden=(16,), latent_dim=4))
    model = import_model([("ours.safetensors", checkpoint_bytes(src, dataset={"name": "unit"}))])
    assert model.info["dataset"] == {"name": "unit"}
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert max_diff(model.reconstruct(x), src.reconstruct(x)) == 0.0


# --- refusals: the inferred architecture ----------------------------------------------------------------


def test_nan_weight_is_refused_naming_the_key(design):
    state = {k: v.clone() for k, v in design.state_dict().items()}
    state["1.fc2.weight"][3, 5] = float("nan")
    with pytest.raises(CheckpointError, match=r"the tensor 1\.fc2\.weight contains NaN"):
        import_model([("nan.pt", torch_bytes(state))])


def test_broken_chain_names_the_widths():
    state = {"0.weight": torch.zeros(100, 784), "0.bias": torch.zeros(100)}
    state |= {"1.weight": torch.zeros(784, 60), "1.bias": torch.zeros(784)}
    with pytest.raises(CheckpointError, match=r"outputs 100 .* takes 60.*784->100.*60->784"):
        import_model([("chain.safetensors", st_save(state))])
    # an encoder output twice the decoder's input is a VAE's mean and log-variance
    state["1.weight"], state["1.bias"] = torch.zeros(784, 50), torch.zeros(784)
    assert import_model([("vae.safetensors", st_save(state))], **CONVENTION).kind == "vae"


def test_decoder_that_does_not_mirror_is_refused_with_widths():
    sizes = [(784, 128), (128, 32), (32, 100), (100, 784)]
    state = {}
    for i, (a, b) in enumerate(sizes):
        state[f"{i}.weight"], state[f"{i}.bias"] = torch.zeros(b, a), torch.zeros(b)
    with pytest.raises(CheckpointError, match=r"784-128-32.*32-100-784.*expected decoder 32-128-784"):
        import_model([("odd.safetensors", st_save(state))])


def test_unknown_input_size_asks_for_input_shape():
    state = {"e.weight": torch.zeros(10, 500), "e.bias": torch.zeros(10)}
    state |= {"f.weight": torch.zeros(500, 10), "f.bias": torch.zeros(500)}
    data = st_save(state)
    with pytest.raises(OptionError, match=r"500 input values.*give its input shape C,H,W with C\*H\*W = 500") as info:
        import_model([("x.safetensors", data)])
    assert info.value.option == "input_shape"
    with pytest.raises(OptionError, match="500"):
        import_model([("x.safetensors", data)], input_shape=(1, 28, 28))
    st = st_save({"e.weight": torch.zeros(10, 400), "e.bias": torch.zeros(10), "f.weight": torch.zeros(400, 10)})
    model = import_model([("y.safetensors", st)], input_shape=(1, 20, 20))
    assert model.input_shape == (1, 20, 20) and "zero bias" in " ".join(model.config.notes["remarks"])


def test_other_layer_types_are_refused_by_name():
    state = {"fc.weight": torch.zeros(4, 784), "fc.bias": torch.zeros(4), "bn.running_mean": torch.zeros(4)}
    with pytest.raises(CheckpointError, match=r"unsupported parameters: bn\.running_mean"):
        import_model([("bn.safetensors", st_save(state))])


# --- refusals: hostile and foreign files ------------------------------------------------------------------


class Touch:
    """Unpickling this creates a file: proof that something ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class Shell:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile_payload(marker) -> bytes:
    return pickle.dumps({"fc.weight": Touch(marker), "fc.bias": Shell(marker)}, protocol=2)


def torch_like_zip(pkl: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", pkl)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")
    return buf.getvalue()


def test_hostile_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    payload = hostile_payload(marker)
    with pytest.raises(CheckpointError, match="objects other than tensors and was refused"):
        import_model([("evil.pt", torch_like_zip(payload))])
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="legacy or raw pickle file, and pickles are never unpickled"):
        import_model([("evil.pt", payload)])
    assert not marker.exists()
    renamed = tmp_path / "evil.safetensors"
    renamed.write_bytes(payload)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(renamed)
    with pytest.raises(CheckpointError, match="pickle"):
        import_model([(renamed.name, renamed.read_bytes())])
    assert not marker.exists()
    # the payload is live: unpickling it here (in the test, deliberately) does create the marker
    pickle.loads(payload)["fc.weight"].close()
    assert marker.exists()


def test_whole_pickled_module_is_refused(design, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(CheckpointError, match="whole pickled model, not a state_dict; save model.state_dict()"):
        import_model([("whole.pt", torch_bytes(design))])
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_is_refused():
    scripted = torch.jit.script(nn.Linear(4, 2))
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)
    with pytest.raises(CheckpointError, match=r"TorchScript archives are not supported.*state_dict\(\)"):
        import_model([("scripted.pt", buf.getvalue())])


def test_one_onnx_file_alone_asks_for_both():
    fake = b"\x08\x08\x12\x07pytorch\x1a\x052.3.0:\x10\n\x05graph" + bytes(64)
    assert detect_format("model.bin", fake) == "onnx"
    assert detect_format("model.onnx", b"\x00\x01garbage") == "onnx"  # the ONNX importer says what is wrong
    with pytest.raises(CheckpointError, match="the encoder's .onnx file and the decoder's .onnx file together"):
        import_model([("model.bin", fake)])
    with pytest.raises(CheckpointError, match="one network"):
        import_model([("enc.onnx", fake), ("dec.pt", torch_bytes({"w.weight": torch.zeros(2, 2)}))])


def test_empty_truncated_and_unknown_files():
    with pytest.raises(CheckpointError, match="the file is empty"):
        import_model([("empty.pt", b"")])
    good = torch_bytes({"fc.weight": torch.zeros(4, 4)})
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        import_model([("cut.pt", good[: len(good) // 2])])
    with pytest.raises(CheckpointError, match="not a model format the explorer reads; accepted: .*ONNX"):
        import_model([("notes.txt", b"hello world, not a model")])
    with pytest.raises(CheckpointError, match="Keras 3 format"):
        import_model([("legacy.h5", b"\x89HDF\r\n\x1a\n" + bytes(100))])
    with pytest.raises(CheckpointError, match="one model file, or two"):
        import_model([("a.pt", good)] * 3)


def test_non_state_dict_objects_are_refused():
    with pytest.raises(CheckpointError, match="not a state_dict"):
        import_model([("list.pt", torch_bytes([torch.zeros(2), torch.zeros(3)]))])


def test_training_checkpoint_dict_uses_its_state_dict(design):
    blob = {"epoch": 3, "model_state_dict": design.state_dict(), "optimizer": {"lr": 0.001}}
    model = import_model([("ckpt.pt", torch_bytes(blob))])
    assert any("model_state_dict" in r for r in model.config.notes["remarks"])
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert max_diff(model.reconstruct(x), design(x).view(-1, 1, 28, 28)) <= TOL


def test_loader_limits_give_clear_messages():
    big = torch_bytes({"w.weight": torch.zeros(4096, 2048)})  # 32 MiB of tensor data
    with pytest.raises(CheckpointError, match="memory limit"):
        load_state_dict_safely(big, "big.pt", memory_limit=8 * 2**20, timeout_s=300)
    with pytest.raises(CheckpointError, match="longer than 0.2 s"):
        load_state_dict_safely(big, "big.pt", timeout_s=0.2)


def test_zip_bomb_is_refused_before_loading():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        zf.writestr("archive/data/0", bytes(50 * 2**20))
    with pytest.raises(CheckpointError, match="zip bomb"):
        torch_state.check_torch_zip(buf.getvalue(), "bomb.pt")


@pytest.mark.parametrize(
    ("pkl", "detail"),
    [
        (b"\x80\x02garbage", "it uses pickle instruction 103"),  # an opcode the weights-only unpickler lacks
        (b"\x80\x02}q\x00}b.", "it rebuilds an object of type dict"),  # BUILD on a plain dict
    ],
)
def test_weights_only_refusals_are_worded_by_us(pkl, detail):
    with pytest.raises(CheckpointError) as info:
        import_model([("odd.pt", torch_like_zip(pkl))])
    message = str(info.value)
    assert message.startswith("odd.pt: the file contains objects other than tensors") and detail in message
    assert message.endswith("torch.save(model.state_dict(), 'model.pt').")
    # nothing of torch's own long explanation, cut or whole, and no object reprs
    assert "documentation" not in message and "trusted source" not in message and " at 0x" not in message


def test_non_string_keys_are_described_by_type():
    with pytest.raises(CheckpointError, match=r"holds a dict \{'a': int, <int key>: Tensor\}, not a state_dict"):
        import_model([("keys.pt", torch_bytes({"a": 1, 2: torch.zeros(1)}))])


def _refusals(tmp_path, design) -> dict[str, tuple[list[tuple[str, bytes]], dict]]:
    """Every refusal the importers can give, by what is wrong: (files, options)."""
    good = torch_bytes({"fc.weight": torch.zeros(4, 4)})
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("notes.txt", "hello")
    scripted = io.BytesIO()
    torch.jit.save(torch.jit.script(nn.Linear(4, 2)), scripted)
    chain = st_save({"0.weight": torch.zeros(100, 784), "1.weight": torch.zeros(784, 60)})
    odd = st_save(
        {f"{i}.weight": torch.zeros(b, a) for i, (a, b) in enumerate([(784, 128), (128, 32), (32, 100), (100, 784)])}
    )
    size500 = st_save({"e.weight": torch.zeros(10, 500), "f.weight": torch.zeros(500, 10)})
    design_st = st_save({k: v.contiguous() for k, v in design.state_dict().items()})
    heads = st_save({k: v.contiguous() for k, v in HeadsVAE().state_dict().items()})
    onnx = b"\x08\x08\x12\x07pytorch\x1a\x052.3.0:\x10\n\x05graph" + bytes(64)
    keras = tmp_path / "selu.keras"
    write_keras(keras, [784, 64, 8], [8, 64, 784], acts=("selu", "linear", "sigmoid"))
    nan = {k: v.clone() for k, v in design.state_dict().items()}
    nan["0.fc1.bias"][0] = float("nan")
    return {
        "no file": ([], {}),
        "three files": ([("a.pt", good)] * 3, {}),
        "unknown format": ([("notes.txt", b"hello world, not a model")], {}),
        "empty": ([("empty.pt", b"")], {}),
        "raw pickle": ([("evil.pt", hostile_payload(tmp_path / "pwned"))], {}),
        "pickle with code": ([("evil.pt", torch_like_zip(hostile_payload(tmp_path / "pwned")))], {}),
        "whole module": ([("whole.pt", torch_bytes(design))], {}),
        "not a state_dict": ([("list.pt", torch_bytes([torch.zeros(2)]))], {}),
        "TorchScript": ([("scripted.pt", scripted.getvalue())], {}),
        "truncated zip": ([("cut.pt", good[: len(good) // 2])], {}),
        "other zip": ([("other.zip", zipped.getvalue())], {}),
        "legacy h5": ([("legacy.h5", b"\x89HDF\r\n\x1a\n" + bytes(100))], {}),
        "one onnx alone": ([("model.onnx", onnx)], {}),
        "onnx with a state_dict": ([("enc.onnx", onnx), ("dec.pt", good)], {}),
        "keras with a state_dict": ([("a.keras", keras.read_bytes()), ("dec.pt", good)], {}),
        "keras activation": ([("selu.keras", keras.read_bytes())], {}),
        "mismatched chain": ([("chain.safetensors", chain)], {}),
        "decoder not mirrored": ([("odd.safetensors", odd)], {}),
        "unknown input size": ([("x.safetensors", size500)], {}),
        "wrong input shape": ([("design.safetensors", design_st)], {"input_shape": (1, 20, 20)}),
        "bad input shape": ([("design.safetensors", design_st)], {"input_shape": (2, 28, 14)}),
        "unknown activation": ([("design.safetensors", design_st)], {"activation": "swish"}),
        "unknown input range": ([("design.safetensors", design_st)], {"input_range": "0-255"}),
        "unknown dataset": ([("design.safetensors", design_st)], {"dataset": "imagenet"}),
        "heads as ae": ([("vae.safetensors", heads)], {"kind": "ae"}),
        "sparse kind": ([("design.safetensors", design_st)], {"kind": "sae"}),
        "other layers": (
            [("bn.safetensors", st_save({"fc.weight": torch.zeros(4, 784), "bn.running_mean": torch.zeros(4)}))],
            {},
        ),
        "NaN": ([("nan.pt", torch_bytes(nan))], {}),
        "zip bomb": ([("bomb.pt", _bomb_zip("archive/data/0", "archive/data.pkl"))], {}),
        "broken checkpoint": ([("ours.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")], {}),
    }


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_refusal_reads_as_a_sentence_in_the_users_terms(tmp_path, design):
    raised = {}
    for what, (files, options) in _refusals(tmp_path, design).items():
        with pytest.raises(CheckpointError) as info:
            import_model(files, **options)
        raised[what] = info.value
        message = str(info.value)
        assert "--" not in message, (what, message)  # no command-line flag: the CLI adds its own
        assert " at 0x" not in message and "object at" not in message, (what, message)
        assert message.endswith("."), (what, message)
        assert "\n" not in message and "Traceback" not in message, (what, message)
    assert not (tmp_path / "pwned").exists()
    # the refusals an option resolves say which option
    assert {what: exc.option for what, exc in raised.items() if isinstance(exc, OptionError)} == {
        "unknown input size": "input_shape",
        "wrong input shape": "input_shape",
        "bad input shape": "input_shape",
        "unknown activation": "activation",
        "unknown input range": "input_range",
        "unknown dataset": "dataset",
        "heads as ae": "kind",
        "sparse kind": "kind",
    }
    assert str(raised["unknown activation"]).startswith("there is no hidden activation called swish; choose one of")


# --- explorer.untrusted: one place for every stranger's bytes ---------------------------------------------


def _bomb_zip(first: str, second: str | None = None) -> bytes:
    """A zip whose ``first`` member is 5 MiB of zeros, deflated about 1000-fold; ``second`` holds b"{}"."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(first, bytes(5 * 2**20))
        if second:
            zf.writestr(second, b"{}")
    return buf.getvalue()


def _load_upload(blob: bytes) -> None:
    from explorer.data import load_user_dataset

    load_user_dataset(blob, filename="bomb.zip")


BOMBS = {
    "dataset upload": (lambda: _bomb_zip("a/zeros.png", "a/1.png"), _load_upload),
    "torch.save file": (
        lambda: _bomb_zip("archive/data/0", "archive/data.pkl"),
        lambda blob: import_model([("bomb.pt", blob)]),
    ),
    ".keras file": (
        lambda: _bomb_zip("model.weights.h5", "config.json"),
        lambda blob: import_model([("bomb.keras", blob)]),
    ),
}


@pytest.mark.parametrize("caller", list(BOMBS))
def test_one_zip_check_for_every_archive(caller, monkeypatch):
    make, load = BOMBS[caller]
    with pytest.raises(ExplorerError, match=r"would expand \d+x .* beyond the 200x allowed; it looks like a zip bomb"):
        load(make())
    monkeypatch.setattr(untrusted.archive, "MAX_ZIP_MEMBERS", 1)
    with pytest.raises(ExplorerError, match="has 2 entries; at most 1 are allowed"):
        load(make())


def test_zip_entries_are_counted_before_zipfile_reads_the_directory(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("zipfile parsed a directory that was over the entry limit")

    blob = _bomb_zip("a", "b")
    monkeypatch.setattr(untrusted.archive, "MAX_ZIP_MEMBERS", 1)
    monkeypatch.setattr(untrusted.archive.zipfile, "ZipFile", boom)
    with pytest.raises(CheckpointError, match="2 entries"):
        untrusted.open_zip(blob, label="many.zip", max_unpacked=2**30, error=CheckpointError)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"", "empty"),
        (st_save({"w": torch.zeros(2)}), "safetensors"),
        (b"PK\x03\x04" + bytes(30), "zip"),
        (b"PK\x05\x06" + bytes(18), "zip"),
        (pickle.dumps({"a": 1}, protocol=2), "pickle"),
        (pickle.dumps({"a": 1}, protocol=5), "pickle"),
        (b"\x89HDF\r\n\x1a\n" + bytes(8), "hdf5"),
        (b"\x1f\x8b\x08" + bytes(8), "gzip"),
        (b"\x93NUMPY\x01\x00", "npy"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"\x08\x08\x12\x07pytorch" + bytes(8), "onnx"),
        (b"hello world", None),
    ],
)
def test_sniff_names_formats_by_content(head, expected):
    assert untrusted.sniff(head) == expected


def test_safetensors_whose_length_looks_like_a_pickle_is_still_safetensors():
    for pad in range(1000):  # a header of 640 bytes (0x0280) starts 0x80 0x02
        blob = st_save({"w": torch.zeros(2)}, metadata={"pad": "x" * pad})
        if blob[:2] == b"\x80\x02":
            assert untrusted.sniff(blob) == "safetensors"
            return
    pytest.fail("no header length in range started with 0x80 0x02")


def test_read_bounded_refuses_before_reading(tmp_path):
    big = tmp_path / "big.pt"
    big.write_bytes(bytes(2048))
    with pytest.raises(CheckpointError, match=r"big.pt is 2 KiB, more than the 1 KiB allowed"):
        untrusted.read_bounded(big, limit=1024)
    with pytest.raises(CheckpointError, match="mine.pt is 2 KiB, more than the 1 KiB allowed"):
        untrusted.read_bounded(bytes(2048), label="mine.pt", limit=1024)
    with pytest.raises(CheckpointError, match="is a folder, not a model file"):
        untrusted.read_bounded(tmp_path, what="model file")
    assert untrusted.read_bounded(big, limit=2048) == bytes(2048)


def test_broken_bare_safetensors_names_the_tensor():
    blob = bytearray(st_save({"a.weight": torch.zeros(4, 4), "b.weight": torch.zeros(4, 4)}))
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    header["b.weight"]["data_offsets"] = header["a.weight"]["data_offsets"]  # two tensors on the same bytes
    raw = json.dumps(header, separators=(",", ":")).encode().ljust(n)
    with pytest.raises(CheckpointError, match=r"x.safetensors: tensor '.\.weight': data at \[0, 64\) overlaps"):
        torch_state.load_safetensors_state(bytes(blob[:8]) + raw + bytes(blob[8 + n :]), "x.safetensors")


# --- Keras ------------------------------------------------------------------------------------------------


def _dense(name: str, units: int, activation: str, inputs: int) -> dict:
    init = {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": None}}
    return {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {
            "name": name,
            "trainable": True,
            "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}},
            "units": units,
            "activation": activation,
            "use_bias": True,
            "kernel_initializer": init,
            "bias_initializer": {"module": "keras.initializers", "class_name": "Zeros", "config": {}},
            "kernel_regularizer": None,
            "bias_regularizer": None,
            "kernel_constraint": None,
            "bias_constraint": None,
        },
        "registered_name": None,
        "build_config": {"input_shape": [None, inputs]},
    }


def _input(shape: list[int], name: str) -> dict:
    return {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": [None, *shape], "dtype": "float32", "sparse": False, "name": name},
        "registered_name": None,
    }


def _sequential(name: str, layers: list[dict]) -> dict:
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": name, "trainable": True, "dtype": "float32", "layers": layers},
        "registered_name": None,
    }


def _random_stack(widths: list[int], rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        (rng.normal(0, 1 / np.sqrt(a), (a, b)).astype(np.float32), rng.normal(0, 0.1, b).astype(np.float32))
        for a, b in zip(widths[:-1], widths[1:])
    ]


def write_keras(
    path,
    enc: list[int],
    dec: list[int],
    acts: tuple[str, str, str] = ("relu", "relu", "sigmoid"),
    nested: bool = True,
    seed: int = 0,
    image: list[int] | None = None,
    huge: bool = False,
):
    """A .keras file as Keras 3 writes it; returns the (kernel (in, out), bias, activation) of every Dense."""
    rng = np.random.default_rng(seed)
    hidden, latent, out = acts
    stacks = []
    for widths, last in ((enc, latent), (dec, out)):
        weights = _random_stack(widths, rng)
        stacks.append([(k, b, hidden if i < len(weights) - 1 else last) for i, (k, b) in enumerate(weights)])
    if nested:
        enc_layers = [_input([enc[0]], "input_layer")] + [
            _dense("dense" if i == 0 else f"dense_{i}", k.shape[1], a, k.shape[0])
            for i, (k, _, a) in enumerate(stacks[0])
        ]
        n = len(stacks[0])
        dec_layers = [_input([dec[0]], "input_layer_1")] + [
            _dense(f"dense_{n + i}", k.shape[1], a, k.shape[0]) for i, (k, _, a) in enumerate(stacks[1])
        ]
        config = _sequential("autoencoder", [_sequential("encoder", enc_layers), _sequential("decoder", dec_layers)])
        paths = [
            [f"layers/sequential/layers/{'dense' if i == 0 else f'dense_{i}'}" for i in range(len(s))] for s in stacks
        ]
        paths[1] = [p.replace("sequential/", "sequential_1/") for p in paths[1]]
    else:
        every = stacks[0] + stacks[1]
        layers = [_input(image or [enc[0]], "input_layer")]
        if image:
            layers.append({"module": "keras.layers", "class_name": "Flatten", "config": {"name": "flatten"}})
        layers += [_dense(f"d{i}", k.shape[1], a, k.shape[0]) for i, (k, _, a) in enumerate(every)]
        if image:
            layers.append(
                {
                    "module": "keras.layers",
                    "class_name": "Reshape",
                    "config": {"name": "reshape", "target_shape": image},
                }
            )
        config = _sequential("autoencoder", layers)
        flat_paths = [f"layers/{'dense' if i == 0 else f'dense_{i}'}" for i in range(len(every))]
        paths = [flat_paths[: len(stacks[0])], flat_paths[len(stacks[0]) :]]
    h5buf = io.BytesIO()
    with h5py.File(h5buf, "w") as h5:
        h5.create_group("vars")
        for group in (["layers/sequential", "layers/sequential_1"] if nested else []) + (
            ["layers/flatten", "layers/reshape"] if image else []
        ):
            h5.create_group(group).create_group("vars")
        for stack, stack_paths in zip(stacks, paths):
            for (k, b, _), p in zip(stack, stack_paths):
                g = h5.create_group(p).create_group("vars")
                if huge:
                    # declared, never written: the file stays small but claims ~560 MB
                    g.create_dataset("0", shape=(1_100_000, k.shape[1]), dtype="float32")
                else:
                    g["0"] = k
                g["1"] = b
        h5.create_group("optimizer").create_group("vars")["0"] = np.array(10, dtype=np.int64)
    meta = {"keras_version": "3.6.0", "date_saved": "2025-01-01@00:00:00"}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps(meta))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", h5buf.getvalue())
    return stacks[0] + stacks[1]


def keras_reference(stack, x: np.ndarray) -> np.ndarray:
    """Forward pass with Keras semantics: x @ kernel + bias, then the activation."""
    fns = {"relu": lambda v: np.maximum(v, 0), "sigmoid": lambda v: 1 / (1 + np.exp(-v)), "linear": lambda v: v}
    fns["tanh"] = np.tanh
    h = x.astype(np.float64)
    for kernel, bias, act in stack:
        h = fns[act](h @ kernel.astype(np.float64) + bias)
    return h


def test_keras_nested_sequentials_match_numpy_reference(tmp_path):
    path = tmp_path / "ae.keras"
    stack = write_keras(path, [784, 128, 64, 32], [32, 64, 128, 784])
    assert detect_format(path.name, path.read_bytes()) == "keras"
    model = import_model([(path.name, path.read_bytes())], input_range="unit")
    cfg = model.config
    assert (cfg.backbone, cfg.latent_dim, cfg.activation, cfg.latent_activation) == ("layerstack", 32, "relu", "relu")
    sources = {d["name"]: d["source"] for d in cfg.notes["decisions"]}
    assert cfg.notes["imported_from"] == "keras" and sources["activation"] == sources["output_activation"] == "file"
    x = np.random.default_rng(1).random((32, 784), dtype=np.float32)
    with torch.no_grad():
        got = model.reconstruct(torch.from_numpy(x).view(-1, 1, 28, 28)).view(32, -1).double().numpy()
    assert np.abs(got - keras_reference(stack, x)).max() <= TOL


def test_keras_flat_rgb_model_is_reordered_to_channels_first(tmp_path):
    path = tmp_path / "rgb.keras"
    stack = write_keras(
        path, [3072, 64, 16], [16, 64, 3072], acts=("tanh", "linear", "sigmoid"), nested=False, image=[32, 32, 3]
    )
    model = import_model([(path.name, path.read_bytes())], input_range="unit")
    assert model.input_shape == (3, 32, 32) and model.config.latent_activation == "identity"
    x = np.random.default_rng(2).random((8, 3, 32, 32), dtype=np.float32)
    keras_in = x.transpose(0, 2, 3, 1).reshape(8, -1)  # what Keras sees: (N, H, W, C) flattened
    want = keras_reference(stack, keras_in).reshape(8, 32, 32, 3).transpose(0, 3, 1, 2)
    with torch.no_grad():
        got = model.reconstruct(torch.from_numpy(x)).double().numpy()
    assert np.abs(got - want).max() <= TOL


def test_keras_unknown_activation_is_refused(tmp_path):
    path = tmp_path / "selu.keras"
    write_keras(path, [784, 64, 8], [8, 64, 784], acts=("selu", "linear", "sigmoid"))
    with pytest.raises(CheckpointError, match="'selu'"):
        import_model([(path.name, path.read_bytes())])


def test_keras_output_activation_comes_from_the_file(tmp_path):
    path = tmp_path / "linear.keras"
    write_keras(path, [784, 64, 8], [8, 64, 784], acts=("relu", "linear", "linear"))
    # a linear last layer gives pixels or logits (a loss "from_logits"): the file leaves the output activation open
    model = import_model([(path.name, path.read_bytes())], output_activation="sigmoid")
    assert model.config.output_activation == "sigmoid"
    sources = {d["name"]: d["source"] for d in model.config.notes["decisions"]}
    assert sources["output_activation"] == "user"
    model = import_model([(path.name, path.read_bytes())])
    sources = {d["name"]: d["source"] for d in model.config.notes["decisions"]}
    assert sources["output_activation"] in ("inferred", "assumed")
    write_keras(path, [784, 64, 8], [8, 64, 784], acts=("relu", "linear", "tanh"))  # a tanh the file records
    with pytest.raises(OptionError, match="the file says 'tanh' but 'sigmoid' was asked for the output activation"):
        import_model([(path.name, path.read_bytes())], output_activation="sigmoid")


def test_keras_huge_declared_dataset_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.keras"
    write_keras(path, [784, 64, 8], [8, 64, 784], huge=True)
    assert path.stat().st_size < 2**20  # the file only declares the size
    with pytest.raises(CheckpointError, match="refused before reading"):
        import_model([(path.name, path.read_bytes())])


def test_keras_external_storage_is_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.zeros((784, 8), np.float32).tobytes())
    path = tmp_path / "ext.keras"
    write_keras(path, [784, 8], [8, 784])
    with zipfile.ZipFile(path) as zf:
        config, meta = zf.read("config.json"), zf.read("metadata.json")
        h5bytes = zf.read("model.weights.h5")
    buf = io.BytesIO(h5bytes)
    with h5py.File(buf, "a") as h5:
        del h5["layers/sequential/layers/dense/vars/0"]
        h5["layers/sequential/layers/dense/vars"].create_dataset(
            "0", shape=(784, 8), dtype="float32", external=[(str(secret), 0, 784 * 8 * 4)]
        )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", meta)
        zf.writestr("config.json", config)
        zf.writestr("model.weights.h5", buf.getvalue())
    with pytest.raises(CheckpointError, match="outside the file"):
        import_model([(path.name, path.read_bytes())])


def _keras_zip(path, config, h5bytes: bytes = b"") -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", config if isinstance(config, str) else json.dumps(config))
        zf.writestr("model.weights.h5", h5bytes)
    return path.read_bytes()


def test_keras_functional_and_hostile_configs_are_refused(tmp_path):
    functional = {"module": "keras", "class_name": "Functional", "config": {"layers": []}}
    with pytest.raises(CheckpointError, match="the model's inputs or outputs are not listed as Keras writes them"):
        import_model([("f.keras", _keras_zip(tmp_path / "f.keras", functional))])
    conv = _sequential("m", [_input([8, 8, 1], "input_layer"), {"class_name": "LSTM", "config": {"name": "lstm"}}])
    with pytest.raises(CheckpointError, match=r"layer 'lstm' is a LSTM, which the importer does not support"):
        import_model([("c.keras", _keras_zip(tmp_path / "c.keras", conv))])
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(CheckpointError, match="not valid JSON"):
        import_model([("d.keras", _keras_zip(tmp_path / "d.keras", deep))])


def test_keras_links_out_of_the_file_are_refused(tmp_path):
    path = tmp_path / "link.keras"
    write_keras(path, [784, 8], [8, 784])
    with zipfile.ZipFile(path) as zf:
        config, h5bytes = zf.read("config.json").decode(), zf.read("model.weights.h5")
    buf = io.BytesIO(h5bytes)
    with h5py.File(buf, "a") as h5:
        del h5["layers/sequential/layers/dense"]
        h5["layers/sequential/layers/dense"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
    with pytest.raises(CheckpointError, match="ExternalLink"):
        import_model([(path.name, _keras_zip(path, config, buf.getvalue()))])


def test_keras_weights_are_read_in_the_child(tmp_path, monkeypatch):
    from explorer.untrusted.sandbox import run_child

    def boom(*args, **kwargs):
        raise AssertionError("h5py parsed a stranger's file in the server process")

    path = tmp_path / "ae.keras"
    write_keras(path, [784, 32, 8], [8, 32, 784])
    monkeypatch.setattr(h5py, "File", boom)
    model = import_model([(path.name, path.read_bytes())])
    assert model.latent_dim == 8
    with zipfile.ZipFile(path) as zf:
        weights = zf.read("model.weights.h5")
    spec = {
        "name": "dense",
        "paths": ["layers/sequential/layers/dense"],
        "vars": [["kernel", [784, 32]], ["bias", [32]]],
    }
    request = {"layers": [[spec]], "max_weight_bytes": 2**20}
    tensors, _ = run_child("keras-h5", weights, label="ae.keras", request=request)
    assert tensors["0.0.kernel"].shape == (784, 32) and tensors["0.0.bias"].shape == (32,)
    with pytest.raises(CheckpointError, match="ae.keras: reading took longer than 0.05 s"):
        run_child("keras-h5", weights, label="ae.keras", request=request, timeout_s=0.05)
    with pytest.raises(CheckpointError, match=r"ae.keras: model.weights.h5 is not a readable HDF5 file"):
        run_child("keras-h5", weights[: len(weights) // 2], label="ae.keras", request=request)
