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

The formats are a table (``explorer.importers.formats``): each row a sniff, a loader with one signature
``(files, options, sample) -> (model, report)``, a label and its file extensions; ``detect_format``, ``labels``,
``accepted``, ``extensions`` and the dispatch all read it, and ``register`` adds a row. The format is decided by
content (``explorer.untrusted``: magic bytes, zip member names) and, for ONNX, by the name. What a file leaves open is worked out from sample images (``explorer.importers.infer``); the ``ImportReport``
says what was decided and how, and is stored in ``model.config.notes``.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from explorer.data import dataset_names
from explorer.errors import CheckpointError, ExplorerError
from explorer.importers.formats import (
    TABLE,
    Format,
    accepted,
    detect_format,
    extensions,
    labels,
    refusal,
    register,
    row,
)
from explorer.importers.options import (
    Decision,
    ImportOptions,
    ImportReport,
    OptionError,
    SampleImages,
    option_label,
)
from explorer.models.backbones import ACTIVATIONS
from explorer.models.config import INPUT_RANGES, OUTPUT_ACTIVATIONS
from explorer.untrusted import MAX_FILE_BYTES, check_size

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

__all__ = [
    "ACCEPTED",
    "LABELS",
    "Decision",
    "Format",
    "ImportOptions",
    "ImportReport",
    "OptionError",
    "accepted",
    "describe",
    "detect_format",
    "extensions",
    "import_files",
    "import_model",
    "labels",
    "register",
]


def __getattr__(name: str) -> Any:
    # the names older callers use, read from the table at each use, so a registered format is in them
    if name == "LABELS":
        return labels()
    if name == "ACCEPTED":
        return accepted()
    raise AttributeError(f"module 'explorer.importers' has no attribute {name!r}")


def _check_options(options: ImportOptions) -> None:
    """Refuse option values that no importer could use, naming the option."""
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
        model, report, fmt = _import(files, options, sample)
    except ExplorerError as exc:
        exc.args = (_sentence(str(exc)),)  # messages from the loaders below are clauses; keep type and attributes
        raise
    if not fmt.keeps_notes:  # a checkpoint of ours keeps the notes it was saved with
        model.config.notes = report.to_dict()
    return model, report


def import_model(files: list[tuple[str, bytes]], **options: Any) -> Autoencoder:
    """``import_files`` with the options as keywords (``ImportOptions`` fields), returning the model alone."""
    return import_files(files, ImportOptions(**options))[0]


def _import(
    files: list[tuple[str, bytes]], options: ImportOptions, sample: SampleImages | None
) -> tuple[Autoencoder, ImportReport, Format]:
    """Detect each file's format, refuse what no row loads, and hand the files to their rows' one loader."""
    if not files:
        raise CheckpointError(f"no file given; {accepted()}")
    if len(files) > max(n for r in TABLE for n in r.counts):
        raise CheckpointError(f"{len(files)} files given; import one model file, or two (an encoder and a decoder).")
    for name, data in files:
        check_size(len(data), label=name, limit=MAX_FILE_BYTES, error=CheckpointError)
    formats = [detect_format(name, data) for name, data in files]
    known = labels()
    for fmt, (name, data) in zip(formats, files):
        if fmt not in known:
            raise refusal(name, fmt, data)
    rows = [row(fmt) for fmt in formats]
    first = min(rows, key=TABLE.index)  # names the import: a torch file before a safetensors one
    if any(r.load is not first.load for r in rows) or len(files) not in first.counts:
        raise _unpaired(rows, [name for name, _ in files])
    assert first.load is not None  # every row in labels() has a loader
    model, report = first.load(files, options, sample)
    report.source = first.label
    return model, report, first


def _unpaired(rows: list[Format], names: list[str]) -> CheckpointError:
    """Why these files do not make one model: said by a row that needs a partner, else one that takes two."""
    found = " and ".join(f"{name} ({r.label})" for r, name in zip(rows, names))
    alone = [r for r in rows if 1 not in r.counts]
    several = [r for r in rows if len(rows) in r.counts]
    why = next((r.pairing for r in alone + several if r.pairing), "each file is a whole model; import one")
    return CheckpointError(f"{why}; got {found}.")


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
