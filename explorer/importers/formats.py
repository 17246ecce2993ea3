"""The table of model file formats: each row a sniff, a loader and a label, and the file extensions it takes.

``detect_format``, the labels, the accepted list and the dispatch in ``explorer.importers`` all read ``TABLE``,
so a new format is one file (its sniff and loader) and one row here, or one ``register`` call.

A sniff looks at a ``Probe`` (the file's name and bytes, and what ``explorer.untrusted`` makes of them, each
worked out once for every row) and says whether the file is its format; the rows are tried in order. Rows
without a loader are formats that are recognised in order to be refused with a reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from explorer.checkpoint import FORMAT
from explorer.errors import CheckpointError
from explorer.importers.keras import load_keras
from explorer.importers.native import load_native
from explorer.importers.onnx import import_onnx
from explorer.importers.options import ImportOptions, ImportReport, SampleImages
from explorer.importers.torch_state import load_state_dicts
from explorer.untrusted import archive, read_header, sniff, zip_entries, zip_names
from explorer.untrusted.keras import is_keras_archive

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

Loader = Callable[[list[tuple[str, bytes]], ImportOptions, "SampleImages | None"], "tuple[Autoencoder, ImportReport]"]
SAVE = "torch.save(model.state_dict(), 'model.pt')"
PAIR = "two files can only be an encoder and a decoder state_dict (torch.save or safetensors)"


class Probe:
    """One file as the sniffs see it; each fact is worked out on first use and kept."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self.data = name, data
        self.lower = name.lower()

    @cached_property
    def magic(self) -> str | None:
        """``explorer.untrusted.sniff``: the format by magic bytes, or None."""
        return sniff(self.data)

    @cached_property
    def entries(self) -> int:
        return zip_entries(self.data) if self.magic == "zip" else 0

    @cached_property
    def names(self) -> list[str]:
        """A zip's member names from its directory (nothing is unpacked); empty when not a readable zip."""
        return (zip_names(self.data) or []) if self.magic == "zip" else []

    @cached_property
    def metadata(self) -> dict[str, str] | None:
        """A safetensors file's string metadata; None when it is not safetensors or its header is damaged."""
        if self.magic != "safetensors":
            return None
        try:
            return read_header(self.data, label=self.name).metadata
        except CheckpointError:
            return None


@dataclass(frozen=True)
class Format:
    """One row: ``sniff`` says whether a file is this format; ``load`` turns the file(s) into a model, or is None
    for a format refused with ``refusal``; ``label`` names it in the app and the command line; ``accepts`` says
    in a few words what is accepted, for the list of formats; ``counts``: how many files make one model."""

    name: str
    label: str
    sniff: Callable[[Probe], bool]
    load: Loader | None = None
    extensions: tuple[str, ...] = ()
    accepts: str = ""
    counts: tuple[int, ...] = (1,)
    refusal: str | Callable[[Probe], str] = ""
    pairing: str = ""  # why files given together do not make one model of this format
    keeps_notes: bool = False  # the file records how it was made (our own checkpoints): its notes are kept


def _is_explorer(p: Probe) -> bool:
    if p.magic == "safetensors":  # a damaged safetensors file is ours to explain: the checkpoint loader names the fault
        return p.metadata is None or p.metadata.get("format") == FORMAT
    return p.magic is None and p.lower.endswith(".safetensors")  # not safetensors at all: the loader says what is wrong


def _is_torchscript(p: Probe) -> bool:
    return any(n.endswith("constants.pkl") or "/code/" in n or n.startswith("code/") for n in p.names)


TABLE: list[Format] = [
    Format("empty", "empty file", lambda p: p.magic == "empty", refusal="the file is empty."),
    Format(
        "onnx",
        "onnx",
        lambda p: p.magic == "onnx" or p.lower.endswith(".onnx"),  # by name: the ONNX importer says what is wrong
        import_onnx,
        (".onnx",),
        "an encoder and a decoder exported to ONNX (two .onnx files)",
        counts=(2,),
        pairing="an ONNX export holds one network; import the encoder's .onnx file and the decoder's .onnx file "
        "together",
    ),
    Format(
        "torchscript",
        "TorchScript archive",
        _is_torchscript,
        refusal=f"TorchScript archives are not supported; save the state_dict with {SAVE} instead, or export the "
        "encoder and the decoder to ONNX.",
    ),
    Format("keras", "keras", lambda p: is_keras_archive(p.names), load_keras, (".keras",), "a Keras 3 .keras file"),
    Format(
        "torch",
        "torch state_dict",
        lambda p: any(n.endswith("data.pkl") for n in p.names),
        load_state_dicts,
        (".pt", ".pth", ".bin"),
        f"a PyTorch state_dict saved with {SAVE} (one file, or two: encoder and decoder)",
        counts=(1, 2),
        pairing=PAIR,
    ),
    Format(
        "explorer",
        "latent-explorer checkpoint",
        _is_explorer,
        load_native,
        (".safetensors",),
        "a latent-explorer .safetensors checkpoint",
        keeps_notes=True,
    ),
    Format(
        "safetensors",
        "safetensors state_dict",
        lambda p: p.magic == "safetensors",
        load_state_dicts,
        (".safetensors",),
        "a bare safetensors state_dict",
        counts=(1, 2),
        pairing=PAIR,
    ),
    Format(
        "pickle",
        "pickle",
        lambda p: p.magic == "pickle" or (p.magic is None and p.lower.endswith((".pkl", ".pickle"))),
        refusal="this is a legacy or raw pickle file, and pickles are never unpickled here (unpickling can run "
        f"arbitrary code); save the state_dict with a current torch.save: {SAVE}.",
    ),
    Format(
        "hdf5",
        "HDF5 file",
        lambda p: p.magic == "hdf5",
        refusal="an HDF5 file (a legacy Keras .h5 model or a bare .weights.h5) holds no architecture the importer "
        "can read; save the model in the Keras 3 format with model.save('model.keras').",
    ),
    Format(
        "crowded-zip",
        "zip archive",
        lambda p: p.entries > archive.MAX_ZIP_MEMBERS,
        refusal=lambda p: f"the archive has {p.entries:,} entries; at most {archive.MAX_ZIP_MEMBERS:,} are allowed.",
    ),
    Format(
        "broken-zip",
        "zip archive",
        lambda p: p.magic == "zip" and not p.names,
        refusal="this is a zip archive (a torch.save or .keras file?) but it is truncated or corrupt; copy or "
        "download it again.",
    ),
]


def register(row: Format, *, before: str | None = None) -> None:
    """Add a format: at the end of the table, or before the row called ``before`` (a sniff that would otherwise
    be answered by an earlier row). Names are unique."""
    if any(r.name == row.name for r in TABLE):
        raise ValueError(f"a format called {row.name!r} is already registered")
    at = next((i for i, r in enumerate(TABLE) if r.name == before), None) if before else None
    if before and at is None:
        raise ValueError(f"there is no format called {before!r} to register {row.name!r} before")
    TABLE.insert(len(TABLE) if at is None else at, row)


def row(name: str) -> Format:
    """The row of a format name from ``detect_format``."""
    for r in TABLE:
        if r.name == name:
            return r
    raise KeyError(name)


def detect_format(name: str, data: bytes) -> str:
    """The name of the first row whose sniff takes the file (e.g. explorer, safetensors, torch, keras, onnx, or a
    refused empty, torchscript, pickle, hdf5), else ``zip`` for another archive or ``unknown``.

    ``explorer`` and ``safetensors`` are both safetensors files; ``explorer`` carries our metadata. A file named
    ``.onnx`` is ``onnx`` whatever it holds: the ONNX importer checks the content and says what is wrong.
    """
    probe = Probe(name, data)
    for r in TABLE:
        if r.sniff(probe):
            return r.name
    return "zip" if probe.magic == "zip" else "unknown"


def loadable() -> list[Format]:
    """The rows with a loader, in table order."""
    return [r for r in TABLE if r.load is not None]


def labels() -> dict[str, str]:
    """Format name -> the label the app and the command line show, for every format that can be imported."""
    return {r.name: r.label for r in loadable()}


def accepted() -> str:
    """The sentence that lists what is accepted, as refusals end."""
    return "accepted: " + "; ".join(r.accepts for r in loadable() if r.accepts) + "."


def extensions() -> list[str]:
    """The file name endings of every importable format (for a file picker; the content decides the format)."""
    return sorted({e for r in loadable() for e in r.extensions})


def refusal(name: str, fmt: str, data: bytes) -> CheckpointError:
    """Why the file ``name`` of the refused (or unknown) format ``fmt`` is not imported."""
    reason = next((r.refusal for r in TABLE if r.name == fmt and r.refusal), None)
    if callable(reason):
        reason = reason(Probe(name, data))
    elif fmt == "zip":
        reason = f"a zip archive that is neither a torch.save file nor a .keras model; {accepted()}"
    return CheckpointError(f"{name}: {reason or f'the file is not a model format the explorer reads; {accepted()}'}")
