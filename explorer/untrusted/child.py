"""The limited child process that parses foreign model files. ``explorer.untrusted.sandbox`` runs it by path:

    python -P child.py torch|keras-h5|onnx < FILE     (working directory: an empty temporary folder)

It reads the file from stdin and ``request.json`` (limits, and for keras-h5 the layers to read) from its
working directory, caps its own address space (RLIMIT_AS) once its libraries are imported, parses, and
writes to stdout only arrays, as safetensors bytes with small string metadata (onnx: a small JSON
description instead). A refusal exits with
REFUSED after writing {"message": ...} (worded for a person) to stdout; running out of memory exits with
OUT_OF_MEMORY. It imports nothing from the explorer and ``-P`` keeps its own folder and the working
directory off ``sys.path``: the libraries that parse a stranger's bytes (torch's unpickler, HDF5) run here,
with nothing of the app's around them, and nowhere else.

Modes:

- ``torch``: ``torch.load(weights_only=True)`` of a ``torch.save`` zip; returns the state_dict's tensors with
  their order as saved (metadata ``order``, a JSON list; safetensors sorts keys, and the order is how layers
  are matched) and a ``note`` when the dict was found under a key such as ``model_state_dict``.
- ``keras-h5``: a Keras 3 ``model.weights.h5``; reads the variables the request names for each layer (kernel,
  bias, BatchNorm statistics, with their shapes) as float32 ``"{group}.{index}.{variable}"``. Every dataset's
  shape, dtype and size is checked before any is read, and only plain datasets inside the file are read (no soft, external or
  virtual links: they could point anywhere on this machine).
- ``onnx``: one ONNX graph, checked, loaded by onnxruntime and run once; see ``child_onnx.py`` beside this file,
  which this process loads by path (``-P`` keeps the folder off ``sys.path``).
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

REFUSED, OUT_OF_MEMORY = 10, 12
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "model_state", "net", "network", "weights", "params")
SAVE_HINT = "save a plain state_dict with torch.save(model.state_dict(), 'model.pt')"


class Refusal(Exception):
    """A reason, worded for a person, why the file is not read."""


def main() -> None:
    warnings.simplefilter("ignore")  # stdout carries the result; library chatter on stderr helps no one
    mode = sys.argv[1]
    with open("request.json", encoding="utf-8") as fh:
        request = json.load(fh)
    data = sys.stdin.buffer.read()
    try:
        if mode == "torch":
            out = read_torch(data, request["memory_limit"])
        elif mode == "keras-h5":
            out = read_keras_h5(data, request)
        elif mode == "onnx":
            out = sibling("child_onnx").read_onnx(data, request)
        else:
            raise Refusal(f"unknown mode {mode!r}")
    except Refusal as refusal:
        sys.stdout.write(json.dumps({"message": str(refusal)}))
        sys.stdout.flush()
        sys.exit(REFUSED)
    except MemoryError:
        sys.exit(OUT_OF_MEMORY)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()


def sibling(name: str) -> Any:
    """The reader ``name``.py from this folder, loaded by path; it imports this module's shared pieces (Refusal,
    cap_memory, library_detail) as ``child``."""
    sys.modules.setdefault("child", sys.modules[__name__])
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cap_memory(budget: int) -> None:
    """Allow ``budget`` bytes of address space on top of what the interpreter and its libraries map now."""
    try:
        import resource
    except ImportError:
        return  # no RLIMIT_AS on this platform: the parent's time limit still applies
    mapped = 0
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    mapped = int(line.split()[1]) * 1024
    except OSError:
        pass
    cap = mapped + budget
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ValueError, OSError):
        pass


# --- torch ------------------------------------------------------------------------------------------------


def read_torch(data: bytes, budget: int) -> bytes:
    import torch
    from safetensors.torch import save

    torch.set_num_threads(1)
    cap_memory(budget)
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:
        text = str(exc)
        if type(exc).__name__ == "UnpicklingError" or "Weights only load failed" in text:
            raise Refusal(weights_only_refusal(text, data)) from None
        if "alloc" in text.lower() and "memory" in text.lower():  # C++ allocation failures arrive as RuntimeError
            raise MemoryError from None
        detail = library_detail(text)
        raise Refusal(
            "torch could not read this file, so it is corrupt or truncated"
            + (f" ({detail})" if detail else "")
            + "; copy or download it again"
        ) from None
    if not isinstance(obj, dict):
        raise Refusal(f"the file holds {describe(obj)}, not a state_dict (a dict of tensors); {SAVE_HINT}")
    picked, note = flatten(obj), ""
    if picked is None:
        for key in STATE_DICT_KEYS:
            inner = flatten(obj[key]) if key in obj else None
            if inner is not None:
                picked, note = inner, f"used the state_dict stored under the key {key!r}"
                break
    if picked is None:
        raise Refusal(f"the file holds {describe(obj)}, not a state_dict (a dict of tensors); {SAVE_HINT}")
    plain = {torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.int16}
    plain |= {torch.int8, torch.uint8, torch.bool}
    tensors = {}
    for key, t in picked.items():
        if t.layout != torch.strided or t.is_quantized or t.dtype not in plain:
            kind = (
                "sparse"
                if t.layout != torch.strided
                else "quantized"
                if t.is_quantized
                else str(t.dtype).removeprefix("torch.")
            )
            raise Refusal(f"tensor {key!r} is a {kind} tensor; only dense float tensors can be imported")
        # clone: safetensors refuses tensors that share storage (tied weights, views)
        tensors[key] = t.detach().clone().contiguous()
    return save(tensors, metadata={"order": json.dumps(list(tensors)), "note": note})


def flatten(obj: Any, prefix: str = "", depth: int = 0) -> dict[str, Any] | None:
    """{dotted key: tensor} of nested dicts of tensors (at most 4 deep); None if anything else is inside."""
    import torch

    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if not (isinstance(obj, dict) and obj and depth < 4 and all(isinstance(k, str) for k in obj)):
        return None
    out: dict[str, Any] = {}
    for key, value in obj.items():
        inner = flatten(value, f"{prefix}.{key}" if prefix else key, depth + 1)
        if inner is None:
            return None
        out.update(inner)
    return out


def type_name(obj: Any) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def describe(obj: Any) -> str:
    """'a list', or "a dict {'epoch': int, <int key>: Tensor}": types and string keys only, never reprs."""
    if not isinstance(obj, dict):
        return f"a {type_name(obj)}"
    keys = list(obj)[:10]
    names = [repr(k) if isinstance(k, str) else f"<{type_name(k)} key>" for k in keys]
    parts = [f"{name}: {type(obj[k]).__name__}" for name, k in zip(names, keys)]
    return "a dict {" + ", ".join(parts) + (", ..." if len(obj) > 10 else "") + "}"


def weights_only_refusal(text: str, data: bytes) -> str:
    """Our own wording for torch's weights_only refusal, naming what it tripped on where torch says so."""
    # A pickled nn.Module stores its submodules and parameters in these attributes; torch.save stores the
    # pickle uncompressed, so they are visible in the raw bytes.
    if b"_modules" in data and b"_parameters" in data:
        return (
            "this file holds a whole pickled model, not a state_dict; save model.state_dict() instead: "
            "torch.save(model.state_dict(), 'model.pt')"
        )
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        detail = f": it references {found.group(1)}, which is not a tensor type"
    elif found := re.search(r"Unsupported operand (\d+)", text):
        detail = f": it uses pickle instruction {found.group(1)}, which torch's weights-only loader does not allow"
    elif found := re.search(r"but got <class '([\w.]+)'>", text):
        detail = f": it rebuilds an object of type {found.group(1)}"
    else:
        detail = ""
    return f"the file contains objects other than tensors and was refused without running them{detail}; {SAVE_HINT}"


def library_detail(text: str) -> str:
    """The first line of a library's message when it reads as a plain sentence; '' otherwise."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = re.sub(r"\[enforce fail at [^\]]*\]\s*\.?\s*", "", lines[0]) if lines else ""
    if not line or len(line) > 200 or re.search(r" at 0x[0-9a-fA-F]+", line):
        return ""
    return line.rstrip(".")


# --- keras-h5 ---------------------------------------------------------------------------------------------


def read_keras_h5(data: bytes, request: dict[str, Any]) -> bytes:
    import h5py
    from safetensors.numpy import save  # not at the top: read_torch's save is safetensors.torch's

    cap_memory(request["memory_limit"])
    try:
        h5 = h5py.File(io.BytesIO(data), "r")
    except (OSError, ValueError):
        raise Refusal("model.weights.h5 is not a readable HDF5 file; the .keras file is damaged") from None
    with h5:
        plan = plan_datasets(h5, request["layers"], request["max_weight_bytes"])
        tensors = {}
        for key, layer, what, ds in plan:
            try:
                array = np.asarray(ds[()], dtype=np.float32)
            except (OSError, ValueError, TypeError):
                raise Refusal(f"layer {layer!r}: the {what} could not be read; the file is damaged") from None
            if not np.isfinite(array).all():
                raise Refusal(f"layer {layer!r}: the {what} contains NaN or Inf values; the model is unusable")
            tensors[key] = array
    return save(tensors)


def plan_datasets(h5: Any, groups: list[list[dict[str, Any]]], max_bytes: int) -> list[tuple[str, str, str, Any]]:
    """(output key, layer name, variable name, dataset) of every variable to read, all checked before any is read.

    Each layer spec names its variables in Keras' saving order with their shapes (``"vars": [[name, shape],
    ...]``: variable k is the dataset ``vars/k``); its output key is ``"{group}.{index}.{name}"``. The declared
    sizes are added up over all layers before any shape is compared: they are what could exhaust memory."""
    plan, shapes = [], []
    total = 0
    for g, group in enumerate(groups):
        for i, spec in enumerate(group):
            where = f"layer {spec['name']!r}"
            base, variables = vars_group(h5, spec)
            extra = sorted(set(variables.keys()) - {str(n) for n in range(len(spec["vars"]))})
            if extra:
                raise Refusal(
                    f"{where}: unexpected variables {extra} under {base} (quantised or LoRA layers are not supported)"
                )
            for index, (what, shape) in enumerate(spec["vars"]):
                path = f"{base}/{index} ({what})"
                ds = dataset(h5, f"{base}/{index}", where)
                if ds is None:
                    raise Refusal(f"{where}: {path} is missing from model.weights.h5")
                if ds.dtype.kind != "f" or ds.dtype.itemsize not in (2, 4, 8):
                    raise Refusal(f"{where}: {path} has dtype {ds.dtype}; expected float")
                size = math.prod(ds.shape) * ds.dtype.itemsize
                total += size
                if total > max_bytes:
                    raise Refusal(
                        f"{where}: {path} declares {mib(size)} ({mib(total)} so far); the weights may take at most "
                        f"{mib(max_bytes)}, so the file was refused before reading"
                    )
                plan.append((f"{g}.{i}.{what}", spec["name"], what, ds))
                shapes.append((f"{where}: {path}", tuple(ds.shape), tuple(shape)))
    for what, found, expected in shapes:
        if found != expected:
            raise Refusal(f"{what} has shape {found}; expected {expected}")
    return plan


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def node(h5: Any, path: str, where: str) -> Any:
    """The object at ``path``, following hard links only; None when absent."""
    import h5py

    current = h5
    for part in path.split("/"):
        if not part or not isinstance(current, h5py.Group) or part not in current:
            return None
        link = current.get(part, getlink=True)
        if not isinstance(link, h5py.HardLink):
            raise Refusal(f"{where}: {path} is a {type(link).__name__}; only data inside the file is read")
        current = current[part]
    return current


def dataset(h5: Any, path: str, where: str) -> Any:
    """The dataset at ``path``; refused when its data lives outside the file (external or virtual storage)."""
    import h5py

    found = node(h5, path, where)
    if found is None:
        return None
    if not isinstance(found, h5py.Dataset):
        raise Refusal(f"{where}: {path} is not a dataset")
    if found.external or found.is_virtual:
        raise Refusal(f"{where}: {path} points at data outside the file; refused")
    return found


def vars_group(h5: Any, spec: dict[str, Any]) -> tuple[str, Any]:
    """The ``.../vars`` group of a layer: Keras 3 paths first, then the older checkpoint-dependency layout."""
    import h5py

    where = f"layer {spec['name']!r}"
    for path in spec["paths"]:
        for candidate in (path, path.replace("layers/", "_layer_checkpoint_dependencies/")):
            found = node(h5, f"{candidate}/vars", where)
            if isinstance(found, h5py.Group):
                return f"{candidate}/vars", found
    raise Refusal(
        f"model.weights.h5 has no weights for {where} (looked for {spec['paths'][0]}/vars); its top-level groups "
        f"are {sorted(h5.keys())}; expected the Keras 3 'layers/...' layout"
    )


if __name__ == "__main__":
    main()
