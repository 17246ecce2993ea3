"""Turn model files from elsewhere into explorer models (and, from the command line, into checkpoints).

Accepted:

- an encoder and a decoder exported to ONNX (two ``.onnx`` files; ``explorer.importers.onnx``);
- a PyTorch ``state_dict`` saved with ``torch.save`` (one file, or two: encoder then decoder), loaded in a
  sandboxed child process with ``weights_only=True``;
- a bare ``.safetensors`` state_dict (no explorer metadata);
- a Keras 3 ``.keras`` file, read without Keras;
- a latent-explorer ``.safetensors`` checkpoint (loaded as is).

Refused with a reason: TorchScript archives, raw or legacy pickles (never unpickled), legacy Keras HDF5 files,
one ONNX file without its partner, and anything unrecognised. Every failure is a ``CheckpointError`` whose
message is a sentence in the user's terms, naming no command-line flag and no widget; one the user resolves by
setting an import option is an ``OptionError`` whose ``option`` names the ``ImportOptions`` field, so the command
line can add its flag and the app its field label.

The format is decided by content (``explorer.untrusted.sniff``, zip member names) and, for ONNX, by the name.
What a file leaves open is worked out from sample images (``explorer.importers.infer``); the ``ImportReport``
says what was decided and how, and is stored in ``model.config.notes``.
"""

from __future__ import annotations

import io
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from explorer.errors import CheckpointError, ExplorerError
from explorer.importers.options import (
    Decision,
    ImportOptions,
    ImportReport,
    OptionError,
    SampleImages,
    option_label,
)
from explorer.untrusted import MAX_FILE_BYTES, check_size, safetensors_header, sniff

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

__all__ = [
    "ACCEPTED",
    "LABELS",
    "Decision",
    "ImportOptions",
    "ImportReport",
    "OptionError",
    "describe",
    "detect_format",
    "import_files",
    "import_model",
]


ACCEPTED = (
    "accepted: an encoder and a decoder exported to ONNX (two .onnx files); a PyTorch state_dict saved with "
    "torch.save(model.state_dict(), 'model.pt') (one file, or two: encoder and decoder); a bare safetensors "
    "state_dict; a Keras 3 .keras file; a latent-explorer .safetensors checkpoint."
)

LABELS = {
    "explorer": "latent-explorer checkpoint",
    "torch": "torch state_dict",
    "safetensors": "safetensors state_dict",
    "keras": "keras",
    "onnx": "onnx",
}


def _zip_names(data: bytes) -> list[str] | None:
    # the names only, from the central directory; open_zip checks the archive before anything is unpacked
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError, EOFError):
        return None


def detect_format(name: str, data: bytes) -> str:
    """One of: empty, explorer, safetensors, torch, keras, onnx, torchscript, pickle, hdf5, zip, broken-zip, unknown.

    ``explorer`` and ``safetensors`` are both safetensors files; ``explorer`` carries our metadata. A file named
    ``.onnx`` is ``onnx`` whatever it holds: the ONNX importer checks the content and says what is wrong.
    """
    from explorer.checkpoint import FORMAT

    found = sniff(data)
    if found == "empty":
        return found
    if found == "onnx" or name.lower().endswith(".onnx"):
        return "onnx"
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
    if found in ("pickle", "hdf5"):
        return found
    lower = name.lower()
    if lower.endswith(".safetensors"):
        return "explorer"  # not safetensors at all: the checkpoint loader says what is wrong
    if lower.endswith((".pkl", ".pickle")):
        return "pickle"
    return "unknown"


def _refuse(fmt: str, name: str, data: bytes) -> CheckpointError:
    save = "torch.save(model.state_dict(), 'model.pt')"
    reasons = {
        "empty": "the file is empty.",
        "torchscript": f"TorchScript archives are not supported; save the state_dict with {save} instead, or export "
        "the encoder and the decoder to ONNX.",
        "pickle": "this is a legacy or raw pickle file, and pickles are never unpickled here (unpickling can run "
        f"arbitrary code); save the state_dict with a current torch.save: {save}.",
        "hdf5": "an HDF5 file (a legacy Keras .h5 model or a bare .weights.h5) holds no architecture the importer "
        "can read; save the model in the Keras 3 format with model.save('model.keras').",
        "broken-zip": "this is a zip archive (a torch.save or .keras file?) but it is truncated or corrupt; copy or "
        "download it again.",
        "zip": f"a zip archive that is neither a torch.save file nor a .keras model; {ACCEPTED}",
    }
    reason = reasons.get(fmt) or f"the file is not a model format the explorer reads; {ACCEPTED}"
    return CheckpointError(f"{name}: {reason}")


def _check_options(options: ImportOptions) -> None:
    """Refuse option values that no importer could use, naming the option."""
    from explorer.data import dataset_names
    from explorer.models.backbones import ACTIVATIONS
    from explorer.models.config import INPUT_RANGES, OUTPUT_ACTIVATIONS

    allowed = {
        "activation": list(ACTIVATIONS),
        "latent_activation": list(ACTIVATIONS),
        "output_activation": list(OUTPUT_ACTIVATIONS),
        "input_range": list(INPUT_RANGES),
        "dataset": dataset_names(),
    }
    for name, values in allowed.items():
        value = getattr(options, name)
        if value is not None and value not in values:
            raise OptionError(
                f"there is no {option_label(name)} called {value}; choose one of {', '.join(values)}.", option=name
            )
    shape = options.input_shape
    if shape is not None and (len(shape) != 3 or shape[0] not in (1, 3) or min(shape) < 1):
        raise OptionError(
            f"the input shape {','.join(map(str, shape))} is not C,H,W with 1 or 3 channels and positive sizes, "
            "e.g. 1,28,28 or 3,64,64.",
            option="input_shape",
        )


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def import_files(
    files: list[tuple[str, bytes]], options: ImportOptions | None = None, *, sample: SampleImages | None = None
) -> tuple[Autoencoder, ImportReport]:
    """An explorer model from (file name, bytes) pairs, and the report of what was found and decided.

    Nothing is written: commit the model with ``explorer.checkpoint.save_checkpoint`` / ``checkpoint_bytes``.
    ``options`` fields left at None come from the file or are inferred; ``sample`` (input shape -> float32
    images (N, C, H, W) in [0, 1]) gives the images open choices are tried on (default: ``options.dataset``,
    else a built-in dataset chosen by input shape). Raises CheckpointError (an OptionError when an option is at
    fault) with a message that reads as a sentence.
    """
    options = options or ImportOptions()
    try:
        _check_options(options)
        model, report, ours = _import(files, options, sample)
    except ExplorerError as exc:
        exc.args = (_sentence(str(exc)),)  # messages from the loaders below are clauses; keep type and attributes
        raise
    if not ours:  # a checkpoint of ours keeps the notes it was saved with
        model.config.notes = report.to_dict()
    return model, report


def import_model(files: list[tuple[str, bytes]], **options: Any) -> Autoencoder:
    """``import_files`` with the options as keywords (``ImportOptions`` fields), returning the model alone."""
    return import_files(files, ImportOptions(**options))[0]


def _import(
    files: list[tuple[str, bytes]], options: ImportOptions, sample: SampleImages | None
) -> tuple[Autoencoder, ImportReport, bool]:
    if not files:
        raise CheckpointError(f"no file given; {ACCEPTED}")
    if len(files) > 2:
        raise CheckpointError(f"{len(files)} files given; import one model file, or two (an encoder and a decoder).")
    for name, data in files:
        check_size(len(data), label=name, limit=MAX_FILE_BYTES, error=CheckpointError)
    formats = [detect_format(name, data) for name, data in files]
    for fmt, (name, data) in zip(formats, files):
        if fmt not in LABELS:
            raise _refuse(fmt, name, data)
    names = [name for name, _ in files]
    if "onnx" in formats:
        if formats != ["onnx", "onnx"]:
            raise CheckpointError(
                f"{' and '.join(names)}: an ONNX export holds one network; import the encoder's .onnx file and the "
                "decoder's .onnx file together."
            )
        return (*_import_onnx(files, options, sample), False)
    if len(files) == 2 and any(fmt not in ("torch", "safetensors") for fmt in formats):
        found = " and ".join(f"{name} ({LABELS[fmt]})" for fmt, name in zip(formats, names))
        raise CheckpointError(
            f"two files can only be an encoder and a decoder state_dict (torch.save or safetensors); got {found}."
        )
    name, data = files[0]
    if formats[0] == "explorer":
        from explorer.checkpoint import load_checkpoint

        report = ImportReport(LABELS["explorer"], names)
        if options.chosen():
            report.remarks.append(
                "a latent-explorer checkpoint records its own architecture; the options were not used"
            )
        try:
            return load_checkpoint(data), report, True
        except CheckpointError as exc:  # read from bytes, the loader cannot name the file
            raise CheckpointError(f"{name}: {exc}") from None
    if formats[0] == "keras":
        return (*_import_keras(name, data, options), False)
    model, info = _import_state_dicts(files, formats, options)
    label = LABELS["torch" if "torch" in formats else "safetensors"]
    return (*_finish(model, info, options, sample, ImportReport(label, names)), False)


def _import_onnx(
    files: list[tuple[str, bytes]], options: ImportOptions, sample: SampleImages | None
) -> tuple[Autoencoder, ImportReport]:
    from explorer.importers.onnx import import_onnx

    return import_onnx(files, options, sample)


def _import_keras(name: str, data: bytes, options: ImportOptions) -> tuple[Autoencoder, ImportReport]:
    """The one call into the Keras importer, which reads what the file records and settles the rest itself."""
    from explorer.importers.keras import import_keras

    return import_keras(name, data, options)


def _import_state_dicts(
    files: list[tuple[str, bytes]], formats: list[str], options: ImportOptions
) -> tuple[Autoencoder, dict[str, Any]]:
    from explorer.importers import torch_state

    def load(name: str, data: bytes, fmt: str) -> tuple[str, dict, list[str], list[str]]:
        if fmt == "torch":
            return (name, *torch_state.load_state_dict_safely(data, name))
        return (name, *torch_state.load_safetensors_state(data, name), [])

    # two torch files load in two limited children at once: most of each load is starting Python and torch
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        futures = [pool.submit(load, name, data, fmt) for (name, data), fmt in zip(files, formats)]
        states = [future.result() for future in futures]
    model, info = torch_state.import_state_dicts([(n, t, o) for n, t, o, _ in states], options)
    info["remarks"] = [r for *_, rs in states for r in rs] + info["remarks"]
    return model, info


def _finish(
    model: Autoencoder,
    info: dict[str, Any],
    options: ImportOptions,
    sample: SampleImages | None,
    report: ImportReport,
) -> tuple[Autoencoder, ImportReport]:
    """Settle what the file left open and fill in the report."""
    from explorer.importers.infer import CHOICES, settle_choices, with_choices

    decided: dict[str, Decision] = {}
    for d in info.get("decisions", []):
        if d.source == "user" and getattr(options, d.name, None) is None:
            d.source = "file"  # an importer passed on what its file says as if it were an option
        decided[d.name] = d
    remarks = list(info.get("remarks", []))
    # a choice the user set always wins, also where an importer did not take it
    user = {c: getattr(options, c) for c in CHOICES if getattr(options, c) is not None}
    for name, value in user.items():
        found = decided.get(name)
        if found is not None and found.source == "file" and found.value != value:
            remarks.append(f"the file records {found.value} for the {option_label(name)}; your choice {value} is used")
        decided[name] = Decision(name, value, "user")
    changed = {c: v for c, v in user.items() if getattr(model.config, c) != v}
    if changed:
        model = with_choices(model, changed)
    open_choices = [c for c in info.get("open", []) if c not in user]
    model, inferred, inferred_remarks = settle_choices(model, open_choices, sample=sample, dataset=options.dataset)
    order = ["kind", "input_shape", *CHOICES]
    decisions = [*decided.values(), *inferred]
    report.decisions = sorted(decisions, key=lambda d: order.index(d.name) if d.name in order else len(order))
    report.remarks = remarks + inferred_remarks
    report.shapes = {k: str(info[k]) for k in ("encoder", "decoder") if info.get(k)}
    return model.eval(), report


def describe(model: Autoencoder) -> list[str]:
    """Lines saying where a model came from, its shapes, how each choice was decided, and remarks."""
    cfg = model.config
    notes = cfg.notes or {}
    files = ", ".join(notes.get("files", []))
    shape = "x".join(str(v) for v in cfg.input_shape)
    lines = [
        f"source: {notes.get('imported_from', 'checkpoint')}" + (f": {files}" if files else ""),
        f"kind {cfg.kind}, backbone {cfg.backbone}, input {shape}, latent {cfg.latent_dim}",
    ]
    shapes = notes.get("shapes") or {}
    if shapes:
        lines.append("; ".join(f"{part} {text}" for part, text in shapes.items()))
    known = {f.name for f in fields(Decision)}
    decisions = [Decision(**{k: v for k, v in d.items() if k in known}) for d in notes.get("decisions", [])]
    lines += [d.describe() for d in decisions] or [
        f"activations: hidden {cfg.activation}, latent {cfg.latent_activation}, output {cfg.output_activation}; "
        f"input range {cfg.input_range}"
    ]
    lines += [f"note: {r}" for r in notes.get("remarks", [])]
    return lines
