"""Import an autoencoder exported to ONNX as two graphs, an encoder and a decoder, from any framework.

Each file is checked in the limited child process first (``explorer.untrusted.sandbox.check_onnx``), which
hands back the graph's inputs and outputs; the server never parses a graph itself. From those:

- which file is the encoder: the graph whose input is the image the other one outputs, and whose output is
  the latent the other one takes (the order the files came in does not matter);
- the input shape and channel order: (B, C, H, W), (B, H, W, C), (B, H, W), or a flat (B, N) with the image
  size from the decoder's output, the user, or a square of 1 or 3 channels;
- the latent size (the decoder's input) and whether the encoder is variational: two outputs named like a mean
  and a log-variance (``mu`` / ``logvar``, ``z_mean`` / ``z_log_var``), two unnamed outputs of the latent's
  size, or one output of twice the latent's size (mean, then log-variance).

A graph does not say how pixels are scaled: the output activation the explorer must add (none when the graph
ends in its own sigmoid) and the input range ([0, 1] or [-1, 1]) are tried on sample images and the pair with
the lowest reconstruction error is kept. Every option the user sets wins.
"""

from __future__ import annotations

import dataclasses
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from explorer import models
from explorer.errors import CheckpointError, ConfigError, DatasetError
from explorer.importers.infer import choose_dataset, sample_sets
from explorer.importers.options import Decision, ImportOptions, ImportReport, OptionError, SampleImages
from explorer.models.onnx import OnnxAE, OnnxConfig
from explorer.untrusted.sandbox import check_onnx

EXPORT_PAIR = (
    "export the encoder and the decoder as two files, e.g. torch.onnx.export(model.encoder, (x,), 'encoder.onnx') "
    "and torch.onnx.export(model.decoder, (z,), 'decoder.onnx'), or with tf2onnx from Keras"
)
# Lower-cased output names: a log-variance, or a mean (not matching the first)
LOGVAR = re.compile(r"log_?var")
MEAN = re.compile(r"mean|(^|[^a-z0-9])mu([^a-z0-9]|$)")
OUTPUT_ACTIVATIONS = ("identity", "sigmoid", "tanh")  # in order of preference when errors tie
INPUT_RANGES = ("unit", "symmetric")
KERAS_PRODUCERS = ("tf2onnx", "keras")  # flatten channels-last


@dataclass
class Graph:
    """One checked file: its single input and its outputs, shapes without the batch."""

    file: str
    data: bytes
    input: str
    input_dims: tuple[int, ...]
    batch: int  # 0: any
    outputs: list[tuple[str, tuple[int, ...]]]  # (name, dims) as the run on zeros produced them
    producer: str
    ops: tuple[str, ...] = ()  # operator types of the top-level graph

    @classmethod
    def checked(cls, file: str, data: bytes) -> Graph:
        info = check_onnx(data, label=file)
        inputs = info["inputs"]
        if len(inputs) != 1:
            names = ", ".join(quoted(i["name"]) for i in inputs)
            raise CheckpointError(
                f"{file}: the graph takes {len(inputs)} inputs ({names}); an encoder or a decoder takes one"
            )
        shape = inputs[0]["shape"]  # the child refused open sizes other than the batch
        outputs = [(o["name"], tuple(o["run_shape"][1:])) for o in info["outputs"]]
        ops = tuple(str(op) for op in info.get("ops", []) if isinstance(op, str))
        return cls(file, data, inputs[0]["name"], tuple(shape[1:]), shape[0] or 0, outputs, str(info["producer"]), ops)

    def describe(self) -> str:
        outs = ", ".join(f"{quoted(name)} {fmt(dims)}" for name, dims in self.outputs)
        return f"{quoted(self.input)} {fmt(self.input_dims)} -> {outs}"


def architecture(ops: tuple[str, ...]) -> str:
    """A word for the network from its operators: what the sidebar says instead of a backbone name."""
    if {"Conv", "ConvTranspose"} & set(ops):
        return "convolutional"
    if {"MatMul", "Gemm"} & set(ops):
        return "dense"
    return "graph"


def fmt(dims: tuple[int, ...]) -> str:
    return "[" + ", ".join(["batch", *map(str, dims)]) + "]"


def quoted(name: str, limit: int = 60) -> str:
    """A tensor name from the file, quoted and short enough for a message."""
    return "'" + (name if len(name) <= limit else name[: limit - 1] + "…") + "'"


def import_onnx(
    files: list[tuple[str, bytes]], options: ImportOptions, sample: SampleImages | None
) -> tuple[OnnxAE, ImportReport]:
    """An explorer model running the encoder and decoder graphs of two ONNX files, given in either order.

    ``sample(input_shape)`` gives images (N, C, H, W) in [0, 1] to settle the pixel scale on; without it the
    scale is tried on ``options.dataset``, or on every built-in dataset (the one reconstructed best becomes the
    model's dataset); with no images at all, the decoder's output range on random latents decides, or the
    explorer's convention.
    """
    if len(files) != 2:
        raise CheckpointError(f"an ONNX autoencoder comes as two files, an encoder and a decoder; {EXPORT_PAIR}")
    for name in ("activation", "latent_activation"):
        if getattr(options, name) is not None:
            words = name.replace("_", " ")
            raise OptionError(f"an ONNX graph carries its own activations; leave the {words} unset", option=name)
    # the two checks run in two children at once: most of each is starting Python and onnxruntime
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda f: Graph.checked(*f), files)
    report = ImportReport(source="onnx", files=[name for name, _ in files])
    encoder, decoder = pair(first, second, report)
    latent_dims = decoder.input_dims
    latent = math.prod(latent_dims)
    outputs, split, variational = posterior(encoder, latent, options, report)
    shape, layout = image_shape(encoder, decoder, options, report)
    try:
        config = OnnxConfig(
            input_shape=shape,
            latent_dim=latent,
            encoder_input=encoder.input,
            encoder_layout=layout,
            encoder_batch=encoder.batch,
            encoder_outputs=outputs,
            split=split,
            variational=variational,
            decoder_input=decoder.input,
            decoder_output=decoder.outputs[0][0],
            decoder_layout=output_layout(decoder, shape, layout),
            decoder_batch=decoder.batch,
            latent_shape=latent_dims,
        )
    except ConfigError as exc:  # sizes the explorer cannot hold (a latent of 100,000 values...)
        raise CheckpointError(f"{encoder.file}, {decoder.file}: {exc}") from None
    model = OnnxAE.from_graphs(config, encoder=encoder.data, decoder=decoder.data)
    settle_on_images(
        model,
        image_sets(sample, shape, options, report),
        options,
        report,
        flat_rgb=layout.startswith("flat") and shape[0] == 3,
    )
    report.shapes = {"encoder": encoder.describe(), "decoder": decoder.describe()}
    report.architecture = architecture(encoder.ops + decoder.ops)
    for graph in (encoder, decoder):
        if graph.batch:
            report.remarks.append(
                f"{graph.file} takes exactly {graph.batch} input(s) per run; larger batches are split"
            )
    model.config.notes = report.to_dict()
    return model, report


def pair(a: Graph, b: Graph, report: ImportReport) -> tuple[Graph, Graph]:
    """(encoder, decoder): the decoder gives back the encoder's input and takes (half) an encoder output. Shapes
    alone fit both ways round for a plain pair; then the encoder is the one taking an image, or the most values."""

    def fits(enc: Graph, dec: Graph) -> bool:
        latent = math.prod(dec.input_dims)
        image = math.prod(enc.input_dims)
        sizes = {math.prod(dims) for _, dims in enc.outputs}
        return len(dec.outputs) == 1 and math.prod(dec.outputs[0][1]) == image and bool(sizes & {latent, 2 * latent})

    def encoder_likeness(g: Graph) -> tuple[bool, int]:
        return channels(g.input_dims) is not None, math.prod(g.input_dims)

    orders = [(enc, dec) for enc, dec in ((a, b), (b, a)) if fits(enc, dec)]
    if not orders:
        raise CheckpointError(
            f"these two graphs are not an encoder and its decoder: {a.file} maps {a.describe()}; {b.file} maps "
            f"{b.describe()}. The decoder must take the encoder's output (the latent) and give back an image of the "
            f"encoder's input size; {EXPORT_PAIR}"
        )
    encoder, decoder = max(orders, key=lambda order: encoder_likeness(order[0]))  # the first of equals: as given
    if encoder is b:
        report.remarks.append(f"took {b.file} as the encoder and {a.file} as the decoder, from their shapes")
    return encoder, decoder


def posterior(
    encoder: Graph, latent: int, options: ImportOptions, report: ImportReport
) -> tuple[tuple[str, ...], bool, bool]:
    """(output names, split, variational): the latent, or the mean and log-variance, among the encoder's outputs."""
    sized = [(name, math.prod(dims)) for name, dims in encoder.outputs]
    plain = [name for name, size in sized if size == latent]
    logvars = [name for name in plain if LOGVAR.search(name.lower())]
    means = [name for name in plain if MEAN.search(name.lower()) and name not in logvars]
    names: tuple[str, ...]
    if len(sized) == 1:
        names, split = (sized[0][0],), sized[0][1] == 2 * latent
    elif len(means) == 1 and len(logvars) == 1:
        names, split = (means[0], logvars[0]), False
    elif len(sized) == 2 and len(plain) == 2:
        names, split = tuple(plain), False
        report.remarks.append(f"took {quoted(plain[0])} as the mean and {quoted(plain[1])} as the log-variance")
    elif len(plain) == 1 and not logvars:
        names, split = (plain[0],), False
        report.remarks.append(f"used the output {quoted(plain[0])}, the size of the decoder's input, as the latent")
    else:
        listed = ", ".join(f"{quoted(name)} ({size})" for name, size in sized)
        raise CheckpointError(
            f"{encoder.file}: cannot tell the latent among the encoder's outputs {listed} for a decoder taking "
            f"{latent} values; name a VAE's outputs mu and logvar, or export only the latent"
        )
    found = split or len(names) == 2
    if options.kind is None or options.kind == OnnxAE.kind:
        want, source = found, "file"
    else:  # the kinds with two encoder heads are the variational ones
        want, source = models.model_class(options.kind).encoder_heads == 2, "user"
    if want and not found:
        raise OptionError(
            f"{encoder.file}: the encoder's output {quoted(names[0])} holds the latent alone, with no log-variance, so the "
            "model cannot be a VAE; leave the kind to be read from the file",
            option="kind",
        )
    named = ", ".join(map(quoted, names))
    value = f"variational (mean and log-variance from {named})" if want else f"autoencoder (latent from {named})"
    report.decisions.append(Decision("kind", value, source))
    return names, split, want


def image_shape(
    encoder: Graph, decoder: Graph, options: ImportOptions, report: ImportReport
) -> tuple[tuple[int, int, int], str]:
    """(C, H, W) and the encoder's input layout: from the graphs, the user, or a square image's size."""
    dims, given = encoder.input_dims, options.input_shape
    source = "file"
    if len(dims) == 1:  # a flat vector: the decoder's output may be an image, else the user or a square decide
        layout = "flat_hwc" if any(p in encoder.producer.lower() for p in KERAS_PRODUCERS) else "flat"
        found = channels(decoder.outputs[0][1])
        shape, source = (found[1], "file") if found else (square_image(dims[0]), "assumed")
        if given is not None and math.prod(given) == dims[0]:
            shape, source = given, "user"
        if shape is None:
            raise OptionError(
                f"{encoder.file}: the encoder takes {dims[0]} values per image, which is not a square image of 1 or "
                "3 channels; give the input shape (channels, height, width)",
                option="input_shape",
            )
    elif (found := channels(dims)) is not None:
        layout, shape = found
    else:
        raise CheckpointError(
            f"{encoder.file}: the encoder's input {fmt(dims)} is not an image of 1 or 3 channels (first or last) "
            "nor a flat vector; export a model of grayscale or RGB images"
        )
    if given is not None and tuple(given) != tuple(shape):
        raise OptionError(
            f"{encoder.file}: the encoder takes images of {'x'.join(map(str, shape))}, not the "
            f"{'x'.join(map(str, given))} asked for; leave the input shape to be read from the file",
            option="input_shape",
        )
    report.decisions.append(Decision("input_shape", "x".join(map(str, shape)), "user" if given else source))
    return (int(shape[0]), int(shape[1]), int(shape[2])), layout


def channels(dims: tuple[int, ...]) -> tuple[str, tuple[int, int, int]] | None:
    """(layout, (C, H, W)) of an image tensor's sizes less the batch: (C, H, W), (H, W, C) or (H, W)."""
    if len(dims) == 2:
        return "hw", (1, dims[0], dims[1])
    if len(dims) == 3 and dims[0] in (1, 3):  # channels first wins the (unlikely) tie: torch's order
        return "nchw", (dims[0], dims[1], dims[2])
    if len(dims) == 3 and dims[2] in (1, 3):
        return "nhwc", (dims[2], dims[0], dims[1])
    return None


def square_image(n: int) -> tuple[int, int, int] | None:
    """(1, s, s) or (3, s, s) holding n values, if either does."""
    for c in (1, 3):
        side = math.isqrt(n // c)
        if n % c == 0 and side * side * c == n:
            return (c, side, side)
    return None


def output_layout(decoder: Graph, shape: tuple[int, int, int], encoder_layout: str) -> str:
    c, h, w = shape
    dims = decoder.outputs[0][1]
    for layout, want in (("nchw", (c, h, w)), ("nhwc", (h, w, c)), ("hw", (h, w) if c == 1 else None)):
        if dims == want:
            return layout
    if dims == (c * h * w,):
        return "flat_hwc" if encoder_layout in ("nhwc", "flat_hwc") else "flat"
    raise CheckpointError(
        f"{decoder.file}: the decoder's output {fmt(dims)} is not an image of {c}x{h}x{w}, the encoder's input"
    )


def image_sets(
    sample: SampleImages | None, shape: tuple[int, int, int], options: ImportOptions, report: ImportReport
) -> list[tuple[str, torch.Tensor]]:
    """[(dataset name, images (N, C, H, W))] to try choices on: the caller's sample (named ""), the named
    dataset, or every built-in dataset with images of this size; empty when none has (and none was named)."""
    try:
        if sample is not None:
            return [("", torch.from_numpy(np.asarray(sample(shape), np.float32)))]
        sets, reasons = sample_sets(options.dataset, shape)
    except DatasetError as exc:
        if options.dataset is not None:
            raise
        reasons = [str(exc)]
        sets = []
    if not sets:
        report.remarks.append(f"no sample images to try choices on ({'; '.join(r.rstrip('.') for r in reasons)})")
    return [(name, torch.from_numpy(np.array(images, np.float32))) for name, images in sets]


def settle_on_images(
    model: OnnxAE, sets: list[tuple[str, torch.Tensor]], options: ImportOptions, report: ImportReport, *, flat_rgb: bool
) -> None:
    """Channel order (flat RGB graphs) and pixel conventions, tried on each image set; the set the model
    reconstructs best is the model's dataset, and its choices are kept."""
    if not sets:
        settle_pixels(model, options, None, report)
        return
    base = model.config
    trials: dict[str, tuple[float, OnnxConfig, list[Decision]]] = {}
    for name, x in sets:
        model.config = base
        trial = ImportReport(source=report.source, files=report.files)
        if flat_rgb:
            settle_channel_order(model, x, trial)
        settle_pixels(model, options, x, trial)
        trials[name] = (reconstruction_error(model, x), model.config, trial.decisions)
    errors = {name: error for name, (error, _, _) in trials.items()}
    best = min(errors, key=errors.__getitem__)
    _, model.config, decisions = trials[best]
    report.decisions += decisions
    if best and (picked := choose_dataset(errors, options.dataset)) is not None:
        report.decisions.append(picked)


def reconstruction_error(model: OnnxAE, x: torch.Tensor) -> float:
    with torch.no_grad():
        error = float((model.decode(model.encode(x)) - x).pow(2).mean())
    return error if math.isfinite(error) else math.inf


def settle_channel_order(model: OnnxAE, x: torch.Tensor, report: ImportReport) -> None:
    """Flat RGB graphs: whether their values run channel by channel (torch) or pixel by pixel (Keras)."""
    errors = {}
    for layout in ("flat", "flat_hwc"):
        model.config = with_flat_layout(model.config, layout)
        errors[layout] = reconstruction_error(model, x)
    best, other = sorted(errors, key=lambda k: errors[k])
    model.config = with_flat_layout(model.config, best)
    words = {"flat": "channels first (C, H, W)", "flat_hwc": "channels last (H, W, C)"}
    report.decisions.append(
        Decision("channel_order", words[best], "inferred", words[other], errors[best], errors[other])
    )


def with_flat_layout(config: OnnxConfig, layout: str) -> OnnxConfig:
    """``config`` with ``layout`` on each side whose tensor is flat."""
    sides: dict[str, Any] = {
        f"{side}_layout": layout
        for side in ("encoder", "decoder")
        if getattr(config, f"{side}_layout").startswith("flat")
    }
    return dataclasses.replace(config, **sides)


def settle_pixels(model: OnnxAE, options: ImportOptions, x: torch.Tensor | None, report: ImportReport) -> None:
    """The output activation and the input range: the user's, else the lowest error on x, else a rule."""
    chosen = {"output_activation": options.output_activation, "input_range": options.input_range}
    candidates = [
        [value] if value else list(every) for value, every in zip(chosen.values(), (OUTPUT_ACTIVATIONS, INPUT_RANGES))
    ]
    base = model.config
    if x is None:
        values: dict[str, Any] = {}
        for (name, value), (guess, source) in zip(chosen.items(), without_images(model)):
            values[name] = value or guess
            report.decisions.append(Decision(name, values[name], "user" if value else source))
        model.config = dataclasses.replace(base, **values)
        return
    errors: dict[tuple[str, str], float] = {}
    for act in candidates[0]:
        for rng in candidates[1]:
            model.config = dataclasses.replace(base, output_activation=act, input_range=rng)
            errors[(act, rng)] = reconstruction_error(model, x)
    best = min(errors, key=lambda k: errors[k])  # the first of equals: the order of preference
    for index, (name, value) in enumerate(chosen.items()):
        rivals = {k: e for k, e in errors.items() if k[index] != best[index]}
        if value or not rivals:
            report.decisions.append(Decision(name, best[index], "user"))
            continue
        runner = min(rivals, key=lambda k: rivals[k])
        report.decisions.append(Decision(name, best[index], "inferred", runner[index], errors[best], rivals[runner]))
    model.config = dataclasses.replace(base, output_activation=best[0], input_range=best[1])


def without_images(model: OnnxAE) -> tuple[tuple[str, str], tuple[str, str]]:
    """((output activation, source), (input range, source)) from the decoder's outputs on random latents: values
    already in [0, 1] or [-1, 1] mean the graph ends in its own sigmoid or tanh; else the explorer's convention."""
    z = torch.randn((16, model.latent_dim), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model.decode_logits(z)
    low, high = float(y.min()), float(y.max())
    tol = 1e-4  # onnxruntime's fast sigmoid and tanh may pass their bounds by a rounding error
    if -tol <= low and high <= 1.0 + tol:
        return ("identity", "file"), ("unit", "assumed")
    if -1.0 - tol <= low and high <= 1.0 + tol:
        return ("identity", "file"), ("symmetric", "assumed")
    return ("sigmoid", "assumed"), ("unit", "assumed")
