"""Turn model files from elsewhere into explorer models (and, from the command line, into checkpoints).

Accepted:

- a latent-explorer ``.safetensors`` checkpoint (loaded as is);
- a PyTorch ``state_dict`` saved with ``torch.save`` (one file, or two: encoder then decoder), loaded in a
  sandboxed child process with ``weights_only=True``;
- a bare ``.safetensors`` state_dict (no explorer metadata);
- a Keras 3 ``.keras`` file of Dense layers, read without Keras.

Refused with a reason: TorchScript archives, ONNX models, raw or legacy pickles (never unpickled), legacy
Keras HDF5 files, and anything unrecognised. Every failure is a ``CheckpointError``.

The format is decided by content (magic bytes, zip member names); the file name is only a hint.
"""

from __future__ import annotations

import argparse
import io
import struct
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorer.checkpoint import MAX_FILE_BYTES  # one size limit for every model file
from explorer.errors import CheckpointError

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

__all__ = ["ACCEPTED", "add_arguments", "describe", "detect_format", "import_model", "main"]


ACCEPTED = (
    "accepted formats: a PyTorch state_dict saved with torch.save(model.state_dict(), 'model.pt') (one file, or "
    "two: encoder and decoder); a bare safetensors state_dict; a Keras 3 .keras file of Dense layers; a "
    "latent-explorer .safetensors checkpoint"
)

LABELS = {
    "explorer": "latent-explorer checkpoint",
    "torch": "torch state_dict",
    "safetensors": "safetensors state_dict",
    "keras": "keras",
}


def _zip_names(data: bytes) -> list[str] | None:
    try:
        return zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError):
        return None


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return 2 <= n <= len(data) - 8 and data[8:9] == b"{"


def _looks_like_onnx(data: bytes) -> bool:
    # An ONNX ModelProto starts with field 1 (ir_version, varint: tag 0x08) and names its producer early on.
    head = data[:4096]
    return head[:1] == b"\x08" and len(head) > 2 and head[1] < 0x80 and (b"onnx" in head.lower() or b"pytorch" in head)


def detect_format(name: str, data: bytes) -> str:
    """One of: empty, explorer, safetensors, torch, keras, torchscript, onnx, pickle, hdf5, zip, broken-zip, unknown.

    ``explorer`` and ``safetensors`` are both safetensors files; ``explorer`` carries our metadata.
    """
    lower = name.lower()
    if not data:
        return "empty"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        names = _zip_names(data)
        if names is None:
            return "broken-zip"
        if any(n.endswith("constants.pkl") or "/code/" in n or n.startswith("code/") for n in names):
            return "torchscript"
        if "config.json" in names and "model.weights.h5" in names:
            return "keras"
        if any(n.endswith("data.pkl") for n in names):
            return "torch"
        return "zip"
    if _looks_like_safetensors(data):
        # before the pickle test: a safetensors header of 640 bytes also starts with 0x80 0x02
        from explorer.checkpoint import FORMAT
        from explorer.importers.torch_state import safetensors_header

        try:
            meta = safetensors_header(data, name).get("__metadata__")
            return "explorer" if isinstance(meta, dict) and meta.get("format") == FORMAT else "safetensors"
        except CheckpointError:
            pass  # not safetensors after all; try the other formats
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if data[:8] == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if lower.endswith(".safetensors"):
        return "explorer"  # not valid safetensors: the checkpoint loader says precisely what is wrong
    if _looks_like_onnx(data) or lower.endswith(".onnx"):
        return "onnx"
    if lower.endswith((".pkl", ".pickle")):
        return "pickle"
    return "unknown"


def _refuse(fmt: str, name: str, data: bytes) -> CheckpointError:
    if fmt == "empty":
        return CheckpointError(f"{name}: the file is empty")
    if fmt == "torchscript":
        return CheckpointError(
            f"{name}: TorchScript archives are not supported; save the state_dict with "
            "torch.save(model.state_dict(), path)"
        )
    if fmt == "onnx":
        return CheckpointError(
            f"{name}: ONNX models are not supported (an ONNX graph cannot be mapped onto the explorer's layers); "
            "import the PyTorch state_dict (torch.save(model.state_dict(), path)) or the Keras .keras file instead"
        )
    if fmt == "pickle":
        return CheckpointError(
            f"{name}: a legacy/raw pickle file; it is never unpickled here (unpickling can run arbitrary code); "
            "re-save with a current torch.save of the state_dict: torch.save(model.state_dict(), 'model.pt')"
        )
    if fmt == "hdf5":
        return CheckpointError(
            f"{name}: an HDF5 file (a legacy Keras .h5 model or a bare .weights.h5) has no architecture this "
            "importer can read; re-save the model in the Keras 3 format with model.save('model.keras')"
        )
    if fmt == "broken-zip":
        return CheckpointError(
            f"{name}: this is a zip archive (a torch.save or .keras file?) but it is truncated or corrupt; "
            "copy or download it again"
        )
    if fmt == "zip":
        return CheckpointError(
            f"{name}: a zip archive that is neither a torch.save file nor a .keras model; {ACCEPTED}"
        )
    return CheckpointError(f"{name}: unrecognised file ({len(data)} bytes, starting {data[:8].hex(' ')}); {ACCEPTED}")


def _import(
    files: list[tuple[str, bytes]],
    *,
    input_shape: tuple[int, int, int] | None,
    kind: str,
    activation: str | None,
    latent_activation: str | None,
) -> tuple[Autoencoder, str]:
    from explorer.importers import torch_state

    if not files:
        raise CheckpointError(f"no file given; {ACCEPTED}")
    if len(files) > 2:
        raise CheckpointError(f"{len(files)} files given; import one model file, or two (encoder, decoder)")
    for name, data in files:
        if len(data) > MAX_FILE_BYTES:
            raise CheckpointError(f"{name} is {len(data)} bytes; the limit is {MAX_FILE_BYTES} (2 GiB)")
    formats = [detect_format(name, data) for name, data in files]
    for fmt, (name, data) in zip(formats, files):
        if fmt not in LABELS:
            raise _refuse(fmt, name, data)
    options: dict[str, Any] = dict(
        kind=kind, input_shape=input_shape, activation=activation, latent_activation=latent_activation
    )
    if len(files) == 2 and any(fmt not in ("torch", "safetensors") for fmt in formats):
        raise CheckpointError(
            "two files can only be an encoder and a decoder state_dict (torch.save or safetensors); got "
            + " and ".join(f"{name} ({LABELS[fmt]})" for fmt, (name, _) in zip(formats, files))
        )
    fmt = formats[0]
    name, data = files[0]
    if fmt == "explorer":
        from explorer.checkpoint import load_checkpoint

        return load_checkpoint(data), fmt
    if fmt == "keras":
        from explorer.importers.keras import import_keras

        model, info = import_keras(name, data, **options)
    else:

        def load(fname: str, fdata: bytes, ffmt: str) -> tuple[str, dict, list[str], list[str]]:
            if ffmt == "torch":
                return (fname, *torch_state.load_state_dict_safely(fdata, fname))
            return (fname, *torch_state.load_safetensors_state(fdata, fname), [])

        # two torch files load in two sandboxed children at once: most of each load is starting Python and torch
        with ThreadPoolExecutor(max_workers=len(files)) as pool:
            futures = [pool.submit(load, fname, fdata, ffmt) for (fname, fdata), ffmt in zip(files, formats)]
            states = [future.result() for future in futures]
        model, info = torch_state.import_state_dicts([(n, t, o) for n, t, o, _ in states], **options)
        info["remarks"] = [r for *_, rs in states for r in rs] + info["remarks"]
        fmt = "torch" if "torch" in formats else fmt
    model.config.notes = {"imported_from": LABELS[fmt], "files": [n for n, _ in files], **info}
    return model, fmt


def import_model(
    files: list[tuple[str, bytes]],
    *,
    input_shape: tuple[int, int, int] | None = None,
    kind: str = "ae",
    activation: str | None = None,
    latent_activation: str | None = None,
) -> Autoencoder:
    """An explorer model from (file name, bytes) pairs; see the module docstring for what is accepted.

    ``activation`` / ``latent_activation`` (names from ``explorer.models.backbones.ACTIVATIONS``) override the
    defaults assumed for a state_dict (relu / identity); a .keras file records its own. What was inferred is in
    ``model.config.notes``.
    """
    model, _ = _import(
        files, input_shape=input_shape, kind=kind, activation=activation, latent_activation=latent_activation
    )
    return model


def describe(model: Autoencoder) -> list[str]:
    """Lines saying what an import inferred (from ``model.config.notes``)."""
    cfg = model.config
    notes = cfg.notes or {}
    lines = [
        f"source: {notes.get('imported_from', 'checkpoint')}: {', '.join(notes.get('files', []))}".rstrip(": "),
        f"kind {cfg.kind}, backbone {cfg.backbone}, input {tuple(cfg.input_shape)}, latent {cfg.latent_dim}",
    ]
    if "encoder" in notes:
        lines.append(f"encoder {notes['encoder']}; decoder {notes['decoder']}")
    acts = notes.get("activations") or {
        "hidden": cfg.activation,
        "latent": cfg.latent_activation,
        "output": "sigmoid",
    }
    assumed = " (assumed: a state_dict does not record activations)" if notes.get("activations_assumed") else ""
    lines.append(f"activations: hidden {acts['hidden']}, latent {acts['latent']}, output {acts['output']}{assumed}")
    lines += [f"note: {r}" for r in notes.get("remarks", [])]
    return lines


# --- python -m explorer import ------------------------------------------------------------------------------


def _shape_arg(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W (three positive integers, e.g. 1,28,28), got {text!r}")
    return shape  # type: ignore[return-value]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``python -m explorer import``."""
    from explorer.importers.torch_state import IMPORTABLE_KINDS

    p.add_argument("files", nargs="+", metavar="FILE", help="model file; or two: encoder and decoder state_dicts")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument(
        "--input-shape",
        type=_shape_arg,
        default=None,
        metavar="C,H,W",
        help="C,H,W (needed unless 784/1024/3072 inputs)",
    )
    p.add_argument("--kind", default="ae", choices=IMPORTABLE_KINDS, help="model kind (default: ae)")
    p.add_argument(
        "--activation", default=None, metavar="NAME", help="hidden activation of a state_dict (default: relu)"
    )
    p.add_argument(
        "--latent-activation", default=None, metavar="NAME", help="encoder output activation (default: identity)"
    )
    p.add_argument(
        "--dataset", default=None, metavar="NAME", help="dataset the model was trained on, recorded in the checkpoint"
    )


def main(args: argparse.Namespace) -> int:
    """Import ``args.files`` and write ``args.out``; CheckpointError propagates to the CLI."""
    from explorer.checkpoint import read_bounded, save_checkpoint

    files = [(Path(raw).name, read_bounded(raw)) for raw in args.files]
    model, fmt = _import(
        files,
        input_shape=args.input_shape,
        kind=args.kind,
        activation=args.activation,
        latent_activation=args.latent_activation,
    )
    names = ", ".join(name for name, _ in files)
    if fmt == "explorer":  # already ours: keep what it records about its data, training and metrics
        dataset = {"name": args.dataset} if args.dataset else model.info.get("dataset", {})
        save_checkpoint(model, args.out, dataset=dataset)
    else:
        dataset = {"name": args.dataset} if args.dataset else {}
        training = {"device": "imported", "source": f"{LABELS[fmt]}: {names}"}
        save_checkpoint(model, args.out, dataset=dataset, training=training, metrics={})
    for line in describe(model):
        print(line)
    print(f"wrote {args.out}")
    return 0
