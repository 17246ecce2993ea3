""".keras files written as Keras 3 lays them out, without Keras, and what Keras computes on them (numpy).

Describe a model with the layer builders below (``conv``, ``deconv``, ``pool``, ...) inside ``sequential``,
``functional`` or ``vae``; ``save`` writes a zip of config.json, metadata.json and model.weights.h5 (every
variable under Keras 3's path: ``layers/<snake_case class>[_<n>]/vars/<i>``, numbered per class within each
model, nested models as ``layers/functional/layers/...``) with seeded random weights, and returns the model
whose ``forward`` is Keras' inference on channels-last float64 arrays: "same" padding puts the odd pixel
after, a transposed convolution is computed in full and cropped the way TensorFlow does, flatten and
reshape are plain numpy reshapes of (B, H, W, C).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
from scipy.special import erf

POLICY = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}
ACTS = {
    "linear": lambda v: v,
    "relu": lambda v: np.maximum(v, 0),
    "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
    "tanh": np.tanh,
    "elu": lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0))),
    "softplus": lambda v: np.logaddexp(0, v),
    "gelu": lambda v: 0.5 * v * (1 + erf(v / math.sqrt(2))),
    "silu": lambda v: v / (1 + np.exp(-v)),
    "leaky_relu": lambda v: np.where(v > 0, v, 0.2 * v),
}


def snake(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _same(size: int, k: int, s: int) -> tuple[int, int, int]:
    """TensorFlow's SAME: (output size, pad before, pad after)."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


@dataclass
class Layer:
    cls: str
    cfg: dict[str, Any]
    name: str = ""
    variables: list[np.ndarray] = field(default_factory=list)
    module: str = "keras.layers"

    def build(self, shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
        """Create the variables (Keras' order) for inputs of ``shape`` (no batch); return the output shape."""
        c = self.cfg
        if self.cls == "Dense":
            self.variables = [
                rng.normal(0, 1 / math.sqrt(shape[-1]), (shape[-1], c["units"])),
                rng.normal(0, 0.1, c["units"]),
            ]
        elif self.cls in ("Conv2D", "Conv2DTranspose"):
            (kh, kw), f, cin = c["kernel_size"], c["filters"], shape[-1]
            kernel_shape = (kh, kw, cin, f) if self.cls == "Conv2D" else (kh, kw, f, cin)
            self.variables = [rng.normal(0, 1 / math.sqrt(kh * kw * cin), kernel_shape), rng.normal(0, 0.1, f)]
        elif self.cls == "BatchNormalization":
            n = shape[-1]
            self.variables = [
                rng.normal(1, 0.2, n),  # gamma
                rng.normal(0, 0.2, n),  # beta
                rng.normal(0, 0.5, n),  # moving mean
                rng.uniform(0.5, 2.0, n),  # moving variance
            ]
        return self.forward(np.zeros((1, *shape))).shape[1:]

    def config(self, shape: tuple[int, ...]) -> dict[str, Any]:
        return {
            "module": self.module,
            "class_name": self.cls,
            "config": {"name": self.name, "trainable": True, "dtype": POLICY, **self.cfg},
            "registered_name": None if self.module.startswith("keras") else f"Custom>{self.cls}",
            "build_config": {"input_shape": [None, *shape]},
        }

    # --- Keras' inference, channels-last ------------------------------------------------------------------

    def forward(self, x: np.ndarray) -> np.ndarray:
        c, cls = self.cfg, self.cls
        if cls == "Dense":
            return self._act(x @ self.variables[0] + self.variables[1])
        if cls == "Conv2D":
            return self._act(self._conv(x))
        if cls == "Conv2DTranspose":
            return self._act(self._deconv(x))
        if cls == "MaxPooling2D":
            return self._pool(x)
        if cls == "UpSampling2D":
            return x.repeat(c["size"][0], axis=1).repeat(c["size"][1], axis=2)
        if cls == "ZeroPadding2D":
            (t, b), (lft, r) = c["padding"]
            return np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)))
        if cls == "Cropping2D":
            (t, b), (lft, r) = c["cropping"]
            return x[:, t : x.shape[1] - b, lft : x.shape[2] - r]
        if cls == "Flatten":
            return x.reshape(len(x), -1)
        if cls == "Reshape":
            return x.reshape(len(x), *c["target_shape"])
        if cls == "BatchNormalization":
            gamma, beta, mean, var = self.variables
            return (x - mean) / np.sqrt(var + c["epsilon"]) * gamma + beta
        if cls == "Dropout":
            return x
        if cls == "Activation":
            return self._act(x)
        if cls == "LeakyReLU":
            return np.where(x > 0, x, c["negative_slope"] * x)
        if cls == "ReLU":
            return np.maximum(x, 0)
        raise NotImplementedError(cls)

    def _act(self, x: np.ndarray) -> np.ndarray:
        return ACTS[self.cfg.get("activation", "linear")](x)

    def _conv(self, x: np.ndarray) -> np.ndarray:
        (kh, kw), (sh, sw) = self.cfg["kernel_size"], self.cfg["strides"]
        kernel, bias = self.variables
        _, h, w, _ = x.shape
        if self.cfg["padding"] == "same":
            (oh, t, b), (ow, lft, r) = _same(h, kh, sh), _same(w, kw, sw)
            x = np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)))
        else:
            oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        out = np.zeros((len(x), oh, ow, kernel.shape[3]))
        for a, c in itertools.product(range(kh), range(kw)):
            out += x[:, a : a + sh * (oh - 1) + 1 : sh, c : c + sw * (ow - 1) + 1 : sw] @ kernel[a, c]
        return out + bias

    def _deconv(self, x: np.ndarray) -> np.ndarray:
        """Every input pixel adds kernel x value onto its stride-spaced patch; the full result is then cropped."""
        (kh, kw), (sh, sw) = self.cfg["kernel_size"], self.cfg["strides"]
        kernel, bias = self.variables  # (kh, kw, out, in)
        b, h, w, _ = x.shape
        full = np.zeros((b, (h - 1) * sh + kh, (w - 1) * sw + kw, kernel.shape[2]))
        for a, c in itertools.product(range(kh), range(kw)):
            full[:, a : a + sh * (h - 1) + 1 : sh, c : c + sw * (w - 1) + 1 : sw] += x @ kernel[a, c].T
        extra = self.cfg.get("output_padding") or (None, None)
        sizes = []
        for n, k, s, p in zip((h, w), (kh, kw), (sh, sw), extra):
            if self.cfg["padding"] == "valid":
                out = (n - 1) * s + max(k, s) if p is None else (n - 1) * s + k + p
                sizes.append((out, 0))
            else:
                out = n * s if p is None else (n - 1) * s + k % 2 + p
                # TensorFlow: the gradient of a SAME convolution from out to n pixels, padded top/left by half
                sizes.append((out, max((n - 1) * s + k - out, 0) // 2))
        (oh, top), (ow, left) = sizes
        grown = np.pad(
            full, ((0, 0), (0, max(top + oh - full.shape[1], 0)), (0, max(left + ow - full.shape[2], 0)), (0, 0))
        )
        return grown[:, top : top + oh, left : left + ow] + bias

    def _pool(self, x: np.ndarray) -> np.ndarray:
        (ph, pw), (sh, sw) = self.cfg["pool_size"], self.cfg["strides"]
        _, h, w, _ = x.shape
        if self.cfg["padding"] == "same":
            (oh, t, b), (ow, lft, r) = _same(h, ph, sh), _same(w, pw, sw)
            x = np.pad(x, ((0, 0), (t, b), (lft, r), (0, 0)), constant_values=-np.inf)
        else:
            oh, ow = (h - ph) // sh + 1, (w - pw) // sw + 1
        windows = [
            x[:, a : a + sh * (oh - 1) + 1 : sh, c : c + sw * (ow - 1) + 1 : sw]
            for a, c in itertools.product(range(ph), range(pw))
        ]
        return np.max(windows, axis=0)


# --- layer builders, with Keras 3's config fields -------------------------------------------------------------


def conv(filters: int, k: int = 3, strides: int = 1, padding: str = "same", activation: str = "linear") -> Layer:
    return Layer("Conv2D", _conv_cfg(filters, k, strides, padding, activation))


def deconv(
    filters: int, k: int = 3, strides: int = 2, padding: str = "same", activation: str = "linear", output_padding=None
) -> Layer:
    cfg = _conv_cfg(filters, k, strides, padding, activation)
    del cfg["groups"]  # Conv2DTranspose has none
    cfg["output_padding"] = None if output_padding is None else [output_padding, output_padding]
    return Layer("Conv2DTranspose", cfg)


def _conv_cfg(filters: int, k: int, strides: int, padding: str, activation: str) -> dict[str, Any]:
    return {
        "filters": filters,
        "kernel_size": [k, k],
        "strides": [strides, strides],
        "padding": padding,
        "data_format": "channels_last",
        "dilation_rate": [1, 1],
        "groups": 1,
        "activation": activation,
        "use_bias": True,
    }


def pool(size: int = 2, padding: str = "valid") -> Layer:
    return Layer(
        "MaxPooling2D",
        {"pool_size": [size, size], "padding": padding, "strides": [size, size], "data_format": "channels_last"},
    )


def upsample(size: int = 2) -> Layer:
    return Layer("UpSampling2D", {"size": [size, size], "data_format": "channels_last", "interpolation": "nearest"})


def zero_pad(top: int, bottom: int, left: int, right: int) -> Layer:
    return Layer("ZeroPadding2D", {"padding": [[top, bottom], [left, right]], "data_format": "channels_last"})


def crop(top: int, bottom: int, left: int, right: int) -> Layer:
    return Layer("Cropping2D", {"cropping": [[top, bottom], [left, right]], "data_format": "channels_last"})


def dense(units: int, activation: str = "linear", name: str = "") -> Layer:
    return Layer("Dense", {"units": units, "activation": activation, "use_bias": True}, name)


def batch_norm() -> Layer:
    cfg = {"axis": -1, "momentum": 0.99, "epsilon": 0.001, "center": True, "scale": True}
    return Layer("BatchNormalization", cfg)


def flatten() -> Layer:
    return Layer("Flatten", {"data_format": "channels_last"})


def reshape(*target: int) -> Layer:
    return Layer("Reshape", {"target_shape": list(target)})


def dropout(rate: float = 0.25) -> Layer:
    return Layer("Dropout", {"rate": rate, "seed": None, "noise_shape": None})


def activation(name: str) -> Layer:
    return Layer("Activation", {"activation": name})


def leaky_relu(slope: float = 0.3) -> Layer:
    return Layer("LeakyReLU", {"negative_slope": slope})


def relu() -> Layer:
    return Layer("ReLU", {"max_value": None, "negative_slope": 0.0, "threshold": 0.0})


# --- models ------------------------------------------------------------------------------------------------


@dataclass
class Model:
    """A Sequential or Functional model of layers and nested models. A VAE encoder ends in ``heads``
    (z_mean, z_log_var) and a custom Sampling layer that reads both; a VAE is an encoder and a decoder model."""

    cls: str  # "Sequential" or "Functional"
    name: str
    items: list[Any]  # Layer or Model, in order
    input_shape: tuple[int, ...] | None = None  # its own InputLayer; None: fed by the model around it
    heads: tuple[Layer, Layer] | None = None

    def forward(self, x: np.ndarray) -> Any:
        """Keras' output; a VAE encoder gives [z_mean, z_log_var], a VAE decodes z_mean (no sampling)."""
        for item in self.items:
            x = item.forward(x)
            if isinstance(x, list):
                x = x[0]
        return [head.forward(x) for head in self.heads] if self.heads else x


def sequential(items: list[Any], input_shape: tuple[int, ...] | None = None, name: str = "") -> Model:
    return Model("Sequential", name, items, input_shape)


def functional(items: list[Any], input_shape: tuple[int, ...] | None = None, name: str = "") -> Model:
    return Model("Functional", name, items, input_shape)


def vae(encoder_items: list[Any], latent: int, decoder_items: list[Any], input_shape: tuple[int, ...]) -> Model:
    """The keras.io VAE, saved as one model: vae = Model(x, decoder(encoder(x)[2]))."""
    heads = (dense(latent, name="z_mean"), dense(latent, name="z_log_var"))
    encoder = Model("Functional", "encoder", encoder_items, input_shape, heads)
    decoder = Model("Functional", "decoder", decoder_items, (latent,))
    return Model("Functional", "vae", [encoder, decoder], input_shape)


def save(path, model: Model, seed: int = 0, keras_version: str = "3.15.1") -> Model:
    """Write ``model`` as a .keras file with random weights; returns it, its variables filled in."""
    writer = _Writer(np.random.default_rng(seed))
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        assert model.input_shape is not None
        config = writer.model(model, model.input_shape, h5)[0]
        h5.create_group("optimizer").create_group("vars")["0"] = np.array(10, dtype=np.int64)
    config["compile_config"] = {"loss": "binary_crossentropy", "optimizer": "adam"}
    write_raw(path, config, buf.getvalue(), {"keras_version": keras_version, "date_saved": "2026-01-01@00:00:00"})
    return model


def write_raw(path, config: Any, weights: bytes, meta: dict | None = None) -> bytes:
    """A .keras zip of the given members, as bytes (also written to ``path``)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("metadata.json", json.dumps(meta or {"keras_version": "3.15.1"}))
        zf.writestr("config.json", config if isinstance(config, str) else json.dumps(config))
        zf.writestr("model.weights.h5", weights)
    with open(path, "rb") as fh:
        return fh.read()


class _Writer:
    """Names layers as Keras does (unique per class across the file); lays out their config and variables."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.used: dict[str, int] = {}

    def unique(self, base: str) -> str:
        n = self.used.get(base, -1) + 1
        self.used[base] = n
        return base if n == 0 else f"{base}_{n}"

    def model(self, m: Model, shape: tuple[int, ...], h5: h5py.Group):
        """(config entry, output shape, keras_history of the output the next layer reads) of model ``m``."""
        m.name = m.name or self.unique(snake(m.cls))
        fed = shape
        functional = m.cls == "Functional"
        counters: dict[str, int] = {}
        h5.create_group("vars")

        def group(cls: str) -> h5py.Group:  # per model, in the order of its layers list
            key = snake(cls)
            counters[key] = counters.get(key, -1) + 1
            return h5.require_group("layers").create_group(key if counters[key] == 0 else f"{key}_{counters[key]}")

        entries: list[dict[str, Any]] = []
        last: list = []
        if m.input_shape is not None:
            name = self.unique("input_layer")
            cfg = {"batch_shape": [None, *m.input_shape], "dtype": "float32", "sparse": False, "name": name}
            entry = {"module": "keras.layers", "class_name": "InputLayer", "config": cfg, "registered_name": None}
            if functional:  # a Sequential's layers leave out its InputLayer, so it has no group there
                entry |= {"name": name, "inbound_nodes": []}
                group("InputLayer").create_group("vars")
            entries.append(entry)
            last = [name, 0, 0]
        for item in m.items:
            g = group(item.cls)
            if isinstance(item, Model):
                entry, after, out = self.model(item, shape, g)
            else:
                entry, after = self.layer(item, shape, g)
                out = [item.name, 0, 0]
            if functional:
                entry |= {"name": entry["config"]["name"], "inbound_nodes": [_node(last, shape)]}
            entries.append(entry)
            shape, last = after, out
        outputs: list = [last]
        if m.heads:
            trunk = last
            for head in m.heads:
                entry, latent_shape = self.layer(head, shape, group("Dense"))
                entries.append(entry | {"name": head.name, "inbound_nodes": [_node(trunk, shape)]})
            sampler = Layer("Sampling", {}, self.unique("sampling"), module="")
            group("Sampling").create_group("vars")
            pair = [[head.name, 0, 0] for head in m.heads]
            node = {"args": [[_tensor(p, latent_shape) for p in pair]], "kwargs": {}}
            entries.append(sampler.config(latent_shape) | {"name": sampler.name, "inbound_nodes": [node]})
            outputs = [*pair, [sampler.name, 0, 0]]
            shape, last = latent_shape, [m.name, 0, 2]  # the decoder reads the sample
        cfg = {"name": m.name, "trainable": True, "dtype": POLICY, "layers": entries}
        if functional:
            assert m.input_shape is not None, "a Functional model starts at its own Input"
            cfg |= {"input_layers": [entries[0]["name"], 0, 0], "output_layers": outputs if m.heads else outputs[0]}
            entry = {"module": "keras.src.models.functional", "class_name": "Functional", "config": cfg}
            entry |= {"registered_name": "Functional", "build_config": {"input_shape": None}}
        else:
            entry = {"module": "keras", "class_name": "Sequential", "config": cfg, "registered_name": None}
            entry["build_config"] = {"input_shape": [None, *fed]}
        return entry, shape, last if m.heads else [m.name, 0, 0]

    def layer(self, item: Layer, shape: tuple[int, ...], g: h5py.Group) -> tuple[dict[str, Any], tuple[int, ...]]:
        item.name = item.name or self.unique(snake(item.cls))
        entry = item.config(shape)
        after = item.build(shape, self.rng)
        variables = g.create_group("vars")
        for i, v in enumerate(item.variables):
            variables[str(i)] = v.astype(np.float32)
        return entry, tuple(after)


def _tensor(history: list, shape: tuple[int, ...]) -> dict[str, Any]:
    config = {"shape": [None, *shape], "dtype": "float32", "keras_history": history}
    return {"class_name": "__keras_tensor__", "config": config}


def _node(history: list, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"args": [_tensor(history, shape)], "kwargs": {}}
