"""An autoencoder brought in as two ONNX graphs, an encoder and a decoder, from any framework; onnxruntime runs it.

The graphs' bytes are the model's state: two uint8 buffers, ``encoder_graph`` and ``decoder_graph``, whose
lengths and SHA-256 digests the config records, so a checkpoint stores and checks them like any weights. A
checkpoint is a stranger's file too: before onnxruntime is handed a graph here, its bytes must match the
digest in the config and pass the limited child process's checks (``explorer.untrusted.sandbox.check_onnx``,
once per digest per process).

Layouts say how a graph's tensor holds our (B, C, H, W) images: ``nchw``; ``nhwc``; ``hw`` (B, H, W: one
channel); ``flat`` (B, C*H*W in C, H, W order, as torch flattens); ``flat_hwc`` (B, H*W*C, as Keras flattens).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
import torch

from explorer.errors import CheckpointError, ConfigError
from explorer.models.base import Autoencoder
from explorer.models.config import ModelConfig
from explorer.models.vae import VAE
from explorer.untrusted.sandbox import check_onnx

LAYOUTS = ("nchw", "nhwc", "hw", "flat", "flat_hwc")
SIDES = ("encoder", "decoder")
MAX_GRAPH_BYTES = 2**31 - 1  # protobuf's limit on one serialised message, and so on one ONNX file
MAX_FIXED_BATCH = 4096


@dataclass
class OnnxConfig(ModelConfig):
    kind: ClassVar[str] = "onnx"

    encoder_bytes: int = 0
    encoder_sha256: str = ""
    encoder_input: str = "image"
    encoder_layout: str = "nchw"
    encoder_batch: int = 0  # 0: any batch size; N: the graph takes exactly N images per run
    # (latent,) or (mean, log-variance); with ``split`` one (B, 2L) output holding the mean, then the log-variance
    encoder_outputs: tuple[str, ...] = ("latent",)
    split: bool = False
    # Treat the posterior as a VAE's: a N(0, I) prior to sample, sigma and KL per image. Needs a log-variance.
    variational: bool = False
    decoder_bytes: int = 0
    decoder_sha256: str = ""
    decoder_input: str = "latent"
    decoder_output: str = "image"
    decoder_layout: str = "nchw"
    decoder_batch: int = 0
    latent_shape: tuple[int, ...] = ()  # the decoder's input less the batch, e.g. (32,) or (32, 1, 1); () = (L,)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.encoder_outputs = tuple(str(name) for name in self.encoder_outputs)
        self.latent_shape = tuple(int(v) for v in self.latent_shape) or (self.latent_dim,)
        for side in SIDES:
            size, digest = getattr(self, f"{side}_bytes"), getattr(self, f"{side}_sha256")
            if not 0 <= int(size) <= MAX_GRAPH_BYTES:
                raise ConfigError(f"{side}_bytes must be between 0 and {MAX_GRAPH_BYTES}, got {size}")
            if digest and not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
                raise ConfigError(f"{side}_sha256 must be 64 lowercase hex digits")
            if getattr(self, f"{side}_layout") not in LAYOUTS:
                raise ConfigError(f"{side}_layout must be one of {', '.join(LAYOUTS)}")
            if not 0 <= int(getattr(self, f"{side}_batch")) <= MAX_FIXED_BATCH:
                raise ConfigError(f"{side}_batch must be between 0 (any) and {MAX_FIXED_BATCH}")
        if "hw" in (self.encoder_layout, self.decoder_layout) and self.input_shape[0] != 1:
            raise ConfigError("the hw layout holds images of one channel")
        if len(self.encoder_outputs) not in (1, 2) or (self.split and len(self.encoder_outputs) != 1):
            raise ConfigError("encoder_outputs must name the latent, or the mean and the log-variance")
        if self.variational and not self.has_posterior:
            raise ConfigError("a variational encoder needs a log-variance: two outputs, or one split in half")
        if math.prod(self.latent_shape) != self.latent_dim:
            raise ConfigError(f"latent_shape {list(self.latent_shape)} does not hold latent_dim {self.latent_dim}")

    @property
    def has_posterior(self) -> bool:
        """Whether the encoder gives a mean and a log-variance (used as a VAE's or not)."""
        return self.split or len(self.encoder_outputs) == 2


class OnnxAE(Autoencoder):
    kind = "onnx"
    title = "ONNX encoder and decoder"
    config_class = OnnxConfig
    config: OnnxConfig
    trainable = False
    stat_titles = VAE.stat_titles  # reported only by a variational graph
    encoder_graph: torch.Tensor  # (N,) uint8: the ONNX file's bytes
    decoder_graph: torch.Tensor

    def __init__(self, config: OnnxConfig) -> None:
        super().__init__(config)
        # Filled from a file before any use (load_state_dict); empty, not zeroed: nothing reads them before that.
        self.register_buffer("encoder_graph", torch.empty(config.encoder_bytes, dtype=torch.uint8))
        self.register_buffer("decoder_graph", torch.empty(config.decoder_bytes, dtype=torch.uint8))
        if config.variational:
            self.encoder_heads = 2
            self.has_prior = True
            self.summary_stats = VAE.summary_stats  # per instance: only a variational graph has a KL
        self._sessions: dict[str, Any] = {}  # side -> onnxruntime.InferenceSession, made on first use
        self.register_load_state_dict_post_hook(_check_loaded)

    @classmethod
    def is_variational(cls, config: dict[str, Any]) -> bool:
        return bool(config.get("variational"))  # the graph pair's own flag, as for has_prior above

    @classmethod
    def from_graphs(cls, config: OnnxConfig, *, encoder: bytes, decoder: bytes) -> OnnxAE:
        """A model of ``config`` holding these graphs; their lengths and digests are written into the config."""
        fields: dict[str, Any] = {}
        for side, data in zip(SIDES, (encoder, decoder)):
            fields.update({f"{side}_bytes": len(data), f"{side}_sha256": hashlib.sha256(data).hexdigest()})
        model = cls(dataclasses.replace(config, **fields))
        model.load_state_dict({f"{side}_graph": as_buffer(data) for side, data in zip(SIDES, (encoder, decoder))})
        return model.eval()

    def graph(self, side: str) -> bytes:
        """The bytes of one graph, refused unless they are the ones whose SHA-256 the config records."""
        data = (self.encoder_graph if side == "encoder" else self.decoder_graph).cpu().numpy().tobytes()
        expected = self.config.encoder_sha256 if side == "encoder" else self.config.decoder_sha256
        if hashlib.sha256(data).hexdigest() != expected:
            raise CheckpointError(
                f"the {side} graph inside this checkpoint does not match the SHA-256 its metadata records: the file "
                "was altered or damaged; import the ONNX files again"
            )
        return data

    # --- the contract -------------------------------------------------------------------------------------
    def codes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[latent] or [mean, log-variance] of images x (B, C, H, W) in [0, 1], each (B, L) on x's device."""
        cfg = self.config
        outs = self._run("encoder", to_layout(self.to_body(x), cfg.encoder_layout), list(cfg.encoder_outputs))
        flat = [torch.from_numpy(out.reshape(len(out), -1)).to(x.device) for out in outs]  # each (B, L) or (B, 2L)
        return list(flat[0].chunk(2, dim=1)) if cfg.split else flat

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.codes(x)[0]  # a posterior's mean: deterministic

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x), each (B, L): a variational graph only."""
        if not self.config.variational:
            raise ConfigError("this graph is not variational: it gives one code per image, no posterior")
        mu, logvar = self.codes(x)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        feed = np.ascontiguousarray(z.detach().cpu().float().numpy()).reshape(len(z), *cfg.latent_shape)
        (out,) = self._run("decoder", feed, [cfg.decoder_output])
        return from_layout(out, cfg.decoder_layout, cfg.input_shape).to(z.device)

    def loss(self, x: torch.Tensor, since_fired: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise ConfigError(
            "an imported ONNX model runs as it was exported and cannot be trained here; train the original model "
            "and export it again"
        )

    # --- hooks --------------------------------------------------------------------------------------------
    def image_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        codes = self.codes(x)
        if not self.config.variational:
            return codes[0], {}
        mu, logvar = codes[0], codes[1].clamp(-30.0, 20.0)
        return mu, {"sigma": (0.5 * logvar).exp().mean(1), "kl": VAE.kl(mu, logvar)}

    def sample_prior(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latents (n, L) from N(0, temperature^2 I), for a variational graph."""
        if not self.has_prior:
            return super().sample_prior(n, temperature, generator)
        return temperature * torch.randn((n, self.latent_dim), generator=generator, device="cpu")

    # --- running the graphs -------------------------------------------------------------------------------
    def _session(self, side: str) -> Any:
        session = self._sessions.get(side)
        if session is None:
            data = self.graph(side)
            check_onnx(data, label=f"the {side} graph")
            session = self._sessions[side] = new_session(data)
        return session

    def _run(self, side: str, feed: np.ndarray, outputs: list[str]) -> list[np.ndarray]:
        """One graph on a batch (B, ...) float32: at once, or in runs of the graph's fixed batch size."""
        cfg = self.config
        name, batch = (
            (cfg.encoder_input, cfg.encoder_batch) if side == "encoder" else (cfg.decoder_input, cfg.decoder_batch)
        )
        session = self._session(side)
        if not batch:
            return list(session.run(outputs, {name: feed}))
        runs = []
        for start in range(0, len(feed), batch):
            part = feed[start : start + batch]
            padded = np.concatenate([part, np.zeros((batch - len(part), *part.shape[1:]), np.float32)])
            runs.append([out[: len(part)] for out in session.run(outputs, {name: padded})])
        return [np.concatenate(parts) for parts in zip(*runs)]


def _check_loaded(model: OnnxAE, _keys: Any) -> None:
    """Refuse a tampered checkpoint as it loads, not at its first encode."""
    for side in SIDES:
        model.graph(side)


def new_session(data: bytes) -> Any:
    """An onnxruntime session on a checked graph: CUDA when this onnxruntime has it, else the CPU; one thread,
    like the torch models, since requests run side by side."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    try:
        return ort.InferenceSession(data, options, providers=providers)
    except Exception:  # onnxruntime's errors derive from Exception alone; the child loaded this graph already
        raise CheckpointError(
            f"onnxruntime could not load a graph it accepted in the checking process (providers {', '.join(providers)})"
        ) from None


def as_buffer(data: bytes) -> torch.Tensor:
    """Graph bytes as a (N,) uint8 tensor that owns its memory."""
    return torch.from_numpy(np.frombuffer(data, np.uint8).copy())


def to_layout(x: torch.Tensor, layout: str) -> np.ndarray:
    """Images (B, C, H, W) -> the graph's layout, float32 and contiguous."""
    if layout in ("nhwc", "flat_hwc"):
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
    if layout.startswith("flat"):
        x = x.reshape(len(x), -1)
    elif layout == "hw":
        x = x[:, 0]  # (B, H, W)
    return np.ascontiguousarray(x.detach().cpu().float().numpy())


def from_layout(y: np.ndarray, layout: str, shape: tuple[int, int, int]) -> torch.Tensor:
    """A graph's output in ``layout`` -> images (B, C, H, W)."""
    c, h, w = shape
    out = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    if layout in ("nhwc", "flat_hwc"):
        return out.reshape(-1, h, w, c).permute(0, 3, 1, 2).contiguous()
    return out.reshape(-1, c, h, w)
