"""ONNX files made by the tests: autoencoders exported with ``torch.onnx.export`` the way people export them, and
hostile graphs written with ``onnx.helper``.

The PyTorch models have seeded random weights (BatchNorm statistics included, so eval mode matters); each is
split into an encoder and a decoder module, exported to two files, and kept so a test can compare onnxruntime's
outputs with PyTorch's.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper
from torch import nn


@dataclass
class Exported:
    encoder: nn.Module  # images as the graph takes them -> latent, or (mean, log-variance)
    decoder: nn.Module  # latent -> images as the graph gives them
    encoder_file: Path
    decoder_file: Path

    def files(self, *, swap: bool = False) -> list[tuple[str, bytes]]:
        pair = [(p.name, p.read_bytes()) for p in (self.encoder_file, self.decoder_file)]
        return pair[::-1] if swap else pair


class Method(nn.Module):
    """One method of a model as a module of its own, so it exports as a graph of its own."""

    def __init__(self, owner: nn.Module, fn: Callable[..., object]) -> None:
        super().__init__()
        self.owner = owner
        self.fn = fn

    def forward(self, x: torch.Tensor) -> object:
        return self.fn(self.owner, x)


def export(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    *,
    outputs: list[str] | None = None,
    dynamic_batch: bool = True,
) -> Path:
    """``module`` as an ONNX file, as a user writes it (torch.onnx.export, the dynamo exporter, weights inside)."""
    shapes = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamic_batch else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(path),
            input_names=["input"],
            output_names=outputs,
            dynamo=True,
            external_data=False,
            verbose=False,
            **shapes,
        )
    return path


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Seeded weights, and BatchNorm statistics far from (0, 1) so that eval mode differs from training mode."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


# --- (a) the common community conv VAE ---------------------------------------------------------------------


class ConvVAE(nn.Module):
    """Conv2d + BatchNorm2d + LeakyReLU encoder, mu and logvar Linear heads, ConvTranspose2d decoder, Sigmoid."""

    def __init__(self, latent: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.LeakyReLU(0.2),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.BatchNorm2d(32),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
        )  # (B, 32 * 7 * 7)
        self.fc_mu = nn.Linear(32 * 7 * 7, latent)
        self.fc_logvar = nn.Linear(32 * 7 * 7, latent)
        self.fc_decode = nn.Linear(latent, 32 * 7 * 7)
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm2d(16),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc_decode(z).view(-1, 32, 7, 7))


def conv_vae(folder: Path) -> Exported:
    model = randomise(ConvVAE(), seed=1)
    enc, dec = Method(model, ConvVAE.encode), Method(model, ConvVAE.decode)
    return Exported(
        enc,
        dec,
        export(enc, torch.rand(2, 1, 28, 28), folder / "vae_encoder.onnx", outputs=["mu", "logvar"]),
        export(dec, torch.randn(2, 16), folder / "vae_decoder.onnx"),
    )


# --- (b) the classic MLP autoencoder, flat vectors in and out ----------------------------------------------


def mlp(folder: Path, *, dynamic_batch: bool = True) -> Exported:
    torch.manual_seed(2)
    enc = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
    dec = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 784), nn.Sigmoid())
    batch = 2 if dynamic_batch else 1
    return Exported(
        enc,
        dec,
        export(enc, torch.rand(batch, 784), folder / "mlp_encoder.onnx", dynamic_batch=dynamic_batch),
        export(dec, torch.rand(batch, 32), folder / "mlp_decoder.onnx", dynamic_batch=dynamic_batch),
    )


# --- (c) a 64x64 RGB conv autoencoder, channels first or last ----------------------------------------------


class ChannelsLast(nn.Module):
    """``inner`` seen through (B, H, W, C) images, as a Keras model is: permuted on the way in or out."""

    def __init__(self, inner: nn.Module, *, images_in: bool) -> None:
        super().__init__()
        self.inner = inner
        self.images_in = images_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.images_in:
            return self.inner(x.permute(0, 3, 1, 2))
        return self.inner(x).permute(0, 2, 3, 1)


def rgb64(folder: Path, *, channels_last: bool = False) -> Exported:
    torch.manual_seed(3)
    enc: nn.Module = nn.Sequential(
        nn.Conv2d(3, 16, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 4, 2, 1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 4, 2, 1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 24),
    )
    dec: nn.Module = nn.Sequential(
        nn.Linear(24, 32 * 8 * 8),
        nn.ReLU(),
        nn.Unflatten(1, (32, 8, 8)),
        nn.ConvTranspose2d(32, 32, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(32, 16, 4, 2, 1),
        nn.ReLU(),
        nn.ConvTranspose2d(16, 3, 4, 2, 1),
        nn.Sigmoid(),
    )
    image = (2, 3, 64, 64)
    if channels_last:
        enc, dec, image = ChannelsLast(enc, images_in=True), ChannelsLast(dec, images_in=False), (2, 64, 64, 3)
    tag = "nhwc" if channels_last else "nchw"
    return Exported(
        enc.eval(),
        dec.eval(),
        export(enc, torch.rand(*image), folder / f"rgb64_{tag}_encoder.onnx"),
        export(dec, torch.randn(2, 24), folder / f"rgb64_{tag}_decoder.onnx"),
    )


# --- models whose pixel scale a file cannot state, and sample images they reconstruct exactly ---------------

# Sample images: sigmoid(SCALE * Q c) for c ~ N(0, I) (N, 4), Q (784, 4) orthonormal: logits of a realistic size
# in a 4-dimensional span, which the linear graphs below encode and decode exactly. Their latent is c itself.
BASIS = torch.linalg.qr(torch.randn(784, 4, generator=torch.Generator().manual_seed(4))).Q
SCALE = 40.0
EPS = 1e-6


def exact_images(shape: tuple[int, int, int], n: int = 64) -> np.ndarray:
    c = torch.randn(n, 4, generator=torch.Generator().manual_seed(5))
    return torch.sigmoid(SCALE * c @ BASIS.T).reshape(n, *shape).numpy().astype(np.float32)


class Project(nn.Module):
    """Images (B, 1, 28, 28) -> (B, 4): the basis coordinates of logit(x) (unit range) or atanh(x) (symmetric)."""

    def __init__(self, symmetric: bool) -> None:
        super().__init__()
        self.symmetric = symmetric
        self.register_buffer("basis", BASIS.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = x.flatten(1)
        t = torch.atanh(v.clamp(-1 + EPS, 1 - EPS)) if self.symmetric else torch.logit(v.clamp(EPS, 1 - EPS))
        return t @ self.basis / SCALE


class Expand(nn.Module):
    """(B, 4) -> images (B, 1, 28, 28): basis combinations, then the graph's own last activation (or none)."""

    def __init__(self, last: str) -> None:
        super().__init__()
        self.last = last
        self.register_buffer("basis", BASIS.clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        y = (SCALE * z @ self.basis.T).reshape(-1, 1, 28, 28)
        return torch.sigmoid(y) if self.last == "sigmoid" else torch.tanh(y) if self.last == "tanh" else y


# variant -> (encoder input range, the decoder graph's last activation)
PIXEL_SCALES = {
    "ends-in-sigmoid": (False, "sigmoid"),
    "returns-logits": (False, "none"),
    "tanh-trained-returns-logits": (True, "none"),
    "ends-in-tanh": (True, "tanh"),
}


def pixel_scale(folder: Path, variant: str) -> Exported:
    symmetric, last = PIXEL_SCALES[variant]
    enc, dec = Project(symmetric), Expand(last)
    return Exported(
        enc.eval(),
        dec.eval(),
        export(enc, torch.rand(2, 1, 28, 28), folder / f"{variant}_encoder.onnx"),
        export(dec, torch.randn(2, 4), folder / f"{variant}_decoder.onnx"),
    )


# --- hostile graphs ----------------------------------------------------------------------------------------


def graph_bytes(
    nodes: list[onnx.NodeProto],
    *,
    initializers: list[onnx.TensorProto] | None = None,
    opset: int = 18,
    domains: tuple[str, ...] = (),
) -> bytes:
    """A model y = f(x) over (1, 4) float tensors; everything about it is sound but what the caller plants."""
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializers or [],
    )
    imports = [helper.make_opsetid("", opset), *(helper.make_opsetid(d, 1) for d in domains)]
    return helper.make_model(graph, opset_imports=imports, ir_version=9, producer_name="tests").SerializeToString()


def external_data() -> bytes:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "16")):
        weight.external_data.add(key=key, value=value)
    return graph_bytes([helper.make_node("Add", ["x", "w"], ["y"])], initializers=[weight])


def custom_domain() -> bytes:
    return graph_bytes([helper.make_node("Backdoor", ["x"], ["y"], domain="com.evil")], domains=("com.evil",))


def absurd_shape() -> bytes:
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**20, 2**20])  # 4 TiB declared, no data
    return graph_bytes([helper.make_node("Add", ["x", "w"], ["y"])], initializers=[weight])


def many_nodes(n: int = 100_000) -> bytes:
    names = ["x", *(f"h{i}" for i in range(n - 1)), "y"]
    return graph_bytes([helper.make_node("Relu", [a], [b]) for a, b in zip(names, names[1:])])


def future_opset() -> bytes:
    return graph_bytes([helper.make_node("Relu", ["x"], ["y"])], opset=99)


def unknown_operator() -> bytes:
    return graph_bytes([helper.make_node("TotallyNewOp", ["x"], ["y"])])


def tiny_relu(tag: str) -> bytes:
    """A sound graph whose bytes differ per ``tag`` (a fresh digest for every test that needs one)."""
    model = onnx.ModelProto.FromString(graph_bytes([helper.make_node("Relu", ["x"], ["y"])]))
    model.doc_string = tag
    return model.SerializeToString()


def zip_archive() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("config.json", "{}")
    return buf.getvalue()
