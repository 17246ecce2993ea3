"""Turn model files from elsewhere into explorer models (and, from the command line, into checkpoints).

Accepted:

- a latent-explorer ``.safetensors`` checkpoint (loaded as is);
- a PyTorch ``state_dict`` saved with ``torch.save`` (one file, or two: encoder then decoder), loaded in a
  sandboxed child process with ``weights_only=True``;
- a bare ``.safetensors`` state_dict (no explorer metadata);
- a Keras 3 ``.keras`` file of Dense layers, read without Keras.

Refused with a reason: TorchScript archives, ONNX models, raw or legacy pickles (never unpickled), legacy
Keras HDF5 files, and anything unrecognised. Every failure is a ``CheckpointError``.

The format is decided by content (``explorer.untrusted.sniff``, zip member names); the file name is only a
hint. ``python -m explorer import`` (``explorer/cli/import_model.py``) writes the result as a checkpoint.
"""

from __future__ import annotations

import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from explorer.errors import CheckpointError
from explorer.untrusted import MAX_FILE_BYTES, check_size, safetensors_header, sniff

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

__all__ = ["ACCEPTED", "LABELS", "describe", "detect_format", "import_files", "import_model"]


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
    # the names only, from the central directory; open_zip checks the archive before anything is unpacked
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        return None


def detect_format(name: str, data: bytes) -> str:
    """One of: empty, explorer, safetensors, torch, keras, torchscript, onnx, pickle, hdf5, zip, broken-zip, unknown.

    ``explorer`` and ``safetensors`` are both safetensors files; ``explorer`` carries our metadata.
    """
    from explorer.checkpoint import FORMAT

    found = sniff(data)
    if found == "zip":
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
    if found == "safetensors":
        try:
            meta = safetensors_header(data, label=name)[0].get("__metadata__")
        except CheckpointError:
            return "explorer"  # a damaged safetensors file: the checkpoint loader names the fault
        return "explorer" if isinstance(meta, dict) and meta.get("format") == FORMAT else "safetensors"
    if found in ("empty", "pickle", "hdf5", "onnx"):
        return found
    lower = name.lower()
    if lower.endswith(".safetensors"):
        return "explorer"  # not safetensors at all: the checkpoint loader says what is wrong
    if lower.endswith(".onnx"):
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


def import_files(
    files: list[tuple[str, bytes]],
    *,
    input_shape: tuple[int, int, int] | None = None,
    kind: str = "ae",
    activation: str | None = None,
    latent_activation: str | None = None,
) -> tuple[Autoencoder, str]:
    """``import_model``, also returning the format found (a key of ``LABELS``)."""
    from explorer.importers import torch_state

    if not files:
        raise CheckpointError(f"no file given; {ACCEPTED}")
    if len(files) > 2:
        raise CheckpointError(f"{len(files)} files given; import one model file, or two (encoder, decoder)")
    for name, data in files:
        check_size(len(data), label=name, limit=MAX_FILE_BYTES, error=CheckpointError)
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

        # two torch files load in two limited children at once: most of each load is starting Python and torch
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
    model, _ = import_files(
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
