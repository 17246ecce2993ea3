"""Import a PyTorch ``state_dict`` (a ``torch.save`` zip or a bare ``.safetensors``) as an explorer model.

A ``torch.save`` file is checked as a zip here (``explorer.untrusted.open_zip``, then exactly one small
``data.pkl``) and loaded with ``torch.load(weights_only=True)`` in the limited child process
(``explorer.untrusted.sandbox``), which hands back only tensors; this process never unpickles anything. The
layers are then matched by their ``*.weight`` / ``*.bias`` names (``explorer.importers.layers``).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import torch

from explorer.errors import CheckpointError
from explorer.importers.infer import CHOICES, settle_choices, with_choices
from explorer.importers.layers import Layer, model_from_layers
from explorer.importers.options import Decision, ImportOptions, ImportReport, SampleImages, option_label
from explorer.untrusted import MAX_FILE_BYTES, human_size, load_safetensors, open_zip, sniff
from explorer.untrusted.sandbox import MEMORY_LIMIT_BYTES, TIMEOUT_S, run_child

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

MAX_PICKLE_BYTES = 64 * 2**20  # data.pkl holds names and tensor metadata only; the tensors are separate members


def check_torch_zip(data: bytes, name: str) -> None:
    """Refuse a zip that is a bomb or not a ``torch.save`` file, from its directory alone (nothing is unpacked)."""
    with open_zip(data, label=name, max_unpacked=MAX_FILE_BYTES, error=CheckpointError) as archive:
        pickles = [i for i in archive.infolist() if re.fullmatch(r"[^/]+/data\.pkl", i.filename)]
    if len(pickles) != 1:
        raise CheckpointError(
            f"{name}: this zip archive is not a torch.save file (it has {len(pickles)} data.pkl members where "
            "torch.save writes one); save the weights with torch.save(model.state_dict(), 'model.pt')."
        )
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(
            f"{name}: data.pkl is {human_size(pickles[0].file_size)}; a state_dict's is far smaller "
            f"(limit {human_size(MAX_PICKLE_BYTES)}), so this is not a plain state_dict; save the weights with "
            "torch.save(model.state_dict(), 'model.pt')."
        )


def load_state_dict_safely(
    data: bytes,
    name: str,
    *,
    timeout_s: float = TIMEOUT_S,
    memory_limit: int = MEMORY_LIMIT_BYTES,
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Load a ``torch.save`` state_dict in the limited child process.

    Returns (tensors, key order as saved, remarks). Raises CheckpointError for anything that is not a dict of
    tensors, including pickles that need code (refused by ``weights_only``), whole pickled modules, crashes,
    timeouts and files that need more than ``memory_limit`` bytes.
    """
    check_torch_zip(data, name)
    tensors, meta = run_child("torch", data, label=name, timeout_s=timeout_s, memory_limit=memory_limit)
    try:
        order = json.loads(meta.get("order", "[]"))
    except json.JSONDecodeError:
        order = []
    if not isinstance(order, list) or sorted(order) != sorted(tensors):
        order = list(tensors)
    remarks = [meta["note"]] if meta.get("note") else []
    return tensors, order, remarks


def load_safetensors_state(data: bytes, name: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A bare safetensors file (no explorer metadata) as a state_dict; key order by position in the file."""
    header, tensors = load_safetensors(data, label=name)
    if not tensors:
        raise CheckpointError(f"{name}: the safetensors file holds no tensors.")
    # the header was validated: every entry but __metadata__ has [begin, end] offsets
    order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    return tensors, order


def _natural_key(key: str) -> tuple:
    """Sort key that puts fc10 after fc2 and an encoder before its decoder."""
    first = key.split(".", 1)[0].lower()
    rank = 1 if first.startswith("dec") else 0
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", key) if p)
    return (rank, parts)


def natural_order(order: list[str]) -> list[str]:
    return sorted(order, key=_natural_key)


def state_to_layers(state: dict[str, torch.Tensor], order: list[str], source: str) -> list[Layer]:
    """Group ``*.weight`` / ``*.bias`` pairs into layers in ``order``; refuse anything else by name."""
    for key in order:
        t = state[key]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):  # other dtypes are refused below
            raise CheckpointError(f"{source}: the tensor {key} contains NaN or Inf values, so the model is unusable.")
    layers: list[Layer] = []
    used: set[str] = set()
    for key in order:
        t = state[key]
        if not (key == "weight" or key.endswith(".weight")) or t.ndim not in (2, 4) or not t.is_floating_point():
            continue
        prefix = key[: -len("weight")]
        bias = state.get(prefix + "bias")
        if bias is not None and (bias.ndim != 1 or not bias.is_floating_point()):
            bias = None  # left over, reported below
        if bias is not None:
            used.add(prefix + "bias")
        used.add(key)
        layers.append(Layer(prefix.rstrip(".") or "weight", t.detach().float(), None if bias is None else bias.float()))
    left = [k for k in order if k not in used]
    if left:
        shown = ", ".join(f"{k} {tuple(state[k].shape)}" for k in left[:8]) + (" ..." if len(left) > 8 else "")
        raise CheckpointError(
            f"{source}: unsupported parameters: {shown}; a state_dict can hold only Linear layers (and the "
            "explorer's own conv layout), not BatchNorm, LayerNorm, embeddings or other layers. Export the encoder "
            "and the decoder to ONNX instead."
        )
    if not layers:
        raise CheckpointError(f"{source}: the state_dict has no Linear or Conv weights.")
    return layers


def import_state_dicts(
    files: list[tuple[str, dict[str, torch.Tensor], list[str]]], options: ImportOptions
) -> tuple[Autoencoder, dict[str, Any]]:
    """Build a model from one state_dict, or two (encoder then decoder); see ``layers.model_from_layers``.

    Each entry is (file name, tensors, key order as stored). The stored order is tried first, then a natural
    sort (for files whose order was lost, such as safetensors); the first that forms a valid model wins.
    """
    source = ", ".join(name for name, _, _ in files)
    per_file = [(name, state_to_layers(state, order, name), state, order) for name, state, order in files]
    remarks: list[str] = []
    if len(per_file) == 2 and all(layer.weight.ndim == 2 for _, layers, _, _ in per_file for layer in layers):
        first, second = per_file[0][1], per_file[1][1]
        # a decoder widens (first in < last out); accept the two files in either order
        if first[0].in_features < first[-1].out_features and second[0].in_features > second[-1].out_features:
            per_file.reverse()
            remarks.append(f"treated {per_file[0][0]} as the encoder and {per_file[1][0]} as the decoder")
    attempts = [[layers for _, layers, _, _ in per_file]]
    natural = [state_to_layers(state, natural_order(order), name) for name, _, state, order in per_file]
    if [[layer.name for layer in g] for g in natural] != [[layer.name for layer in g] for g in attempts[0]]:
        attempts.append(natural)
    first_error: CheckpointError | None = None
    for groups in attempts:
        try:
            model, info = model_from_layers(groups, options, source=source)
        except CheckpointError as exc:
            first_error = first_error or exc
            continue
        info["remarks"] = remarks + info["remarks"]
        return model, info
    assert first_error is not None
    raise first_error


def load_state_dicts(
    files: list[tuple[str, bytes]], options: ImportOptions, sample: SampleImages | None
) -> tuple[Autoencoder, ImportReport]:
    """The importer of one state_dict file, or two (an encoder and a decoder), each a ``torch.save`` file or a
    bare safetensors file: the layers are matched by name, what the files leave open is settled."""

    def load(name: str, data: bytes) -> tuple[str, dict, list[str], list[str]]:
        if sniff(data) == "safetensors":
            return (name, *load_safetensors_state(data, name), [])
        return (name, *load_state_dict_safely(data, name))

    # two torch files load in two limited children at once: most of each load is starting Python and torch
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        states = list(pool.map(lambda f: load(*f), files))
    model, info = import_state_dicts([(n, t, o) for n, t, o, _ in states], options)
    info["remarks"] = [r for *_, rs in states for r in rs] + info["remarks"]
    return _finish(model, info, options, sample, ImportReport("state_dict", [name for name, _ in files]))


def _finish(
    model: Autoencoder,
    info: dict[str, Any],
    options: ImportOptions,
    sample: SampleImages | None,
    report: ImportReport,
) -> tuple[Autoencoder, ImportReport]:
    """Settle what the file left open and fill in the report."""
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
