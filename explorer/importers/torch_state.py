"""Import a PyTorch ``state_dict`` (a ``torch.save`` zip or a bare ``.safetensors``) as an explorer model.

Loading is sandboxed: ``torch.load(..., weights_only=True)`` runs in a child Python process with an
address-space cap and a wall-time limit, and hands back only tensors, as safetensors bytes. This
process never unpickles anything.

A state_dict holds names and shapes, not the forward pass, so the architecture is inferred:

- MLP: the 2-D ``*.weight`` tensors (with their ``*.bias``) in file order form a chain
  D -> h1 -> ... -> L -> ... -> h1 -> D; the narrowest layer is the bottleneck (or the file boundary
  when the encoder and decoder come as two files). The decoder must mirror the encoder's widths,
  because the explorer's MLP decoder does.
- conv: only the explorer's own conv layout (stride-2 kernel-4 ``Conv2d`` stages, one or two
  ``Linear`` layers each side, ``ConvTranspose2d`` stages back), checked shape by shape.
- vae: the encoder's last layer outputs mean and log-variance (2 x latent), either as one layer or as
  two parallel heads (e.g. ``fc_mu``/``fc_logvar``), which are concatenated.

Activations are not stored in a state_dict: hidden layers default to ReLU, the latent to identity and
the output to a sigmoid (the explorer's contract); callers override the first two.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from explorer.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch

    from explorer.models.base import Autoencoder

IMPORTABLE_KINDS = ("ae", "dae", "vae")
MAX_ZIP_UNCOMPRESSED = 2 * 2**30  # the same ceiling as a checkpoint file
MAX_ZIP_MEMBERS = 100_000
MAX_PICKLE_BYTES = 64 * 2**20  # data.pkl holds names and tensor metadata only; the tensors are separate members
MAX_COMPRESSION_RATIO = 100  # torch.save stores members uncompressed; a high ratio means a zip bomb
MEMORY_LIMIT_BYTES = 4 * 2**30  # what the loader child may map on top of the interpreter and torch
LOAD_TIMEOUT_S = 60.0
MAX_HEADER_BYTES = 16 * 2**20

# Known flat input sizes and the image shape they almost always are.
DEFAULT_SHAPES: dict[int, tuple[int, int, int]] = {784: (1, 28, 28), 1024: (1, 32, 32), 3072: (3, 32, 32)}

# Exit codes of the loader child (see _CHILD).
_RC_REFUSED, _RC_NOT_STATE, _RC_MEMORY, _RC_LOAD, _RC_TENSOR = 10, 11, 12, 13, 14

# Runs in the child via ``python -P -c``. It reads the file from stdin, caps its own address space, loads
# with weights_only=True and writes the tensors to stdout as safetensors, their order in the metadata
# (safetensors sorts keys, and the order is how layers are matched).
_CHILD = r"""
import io, json, sys


def vm_bytes():
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fail(code, message):
    sys.stderr.write(" ".join(str(message).split())[:4000] + "\n")
    sys.stderr.flush()
    sys.exit(code)


def flatten(obj, prefix, out, depth):
    import torch

    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
        return True
    if isinstance(obj, dict) and obj and depth < 4 and all(isinstance(k, str) for k in obj):
        return all(flatten(v, prefix + "." + k if prefix else k, out, depth + 1) for k, v in obj.items())
    return False


def describe(obj):
    name = type(obj).__module__ + "." + type(obj).__qualname__
    if isinstance(obj, dict):
        keys = list(obj)[:10]
        parts = [repr(k) + ": " + type(obj[k]).__name__ for k in keys]
        more = " ..." if len(obj) > 10 else ""
        return "a dict {" + ", ".join(parts) + more + "}"
    return "a " + name


def main():
    budget = int(sys.argv[1])
    data = sys.stdin.buffer.read()
    import torch
    from safetensors.torch import save

    torch.set_num_threads(1)
    try:
        import resource

        cap = vm_bytes() + budget
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):
        pass  # no RLIMIT_AS on this platform: the wall-time limit still applies
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except MemoryError:
        fail(12, "out of memory")
    except Exception as exc:
        text = str(exc)
        if type(exc).__name__ == "UnpicklingError" or "Weights only load failed" in text:
            fail(10, text)
        if "alloc" in text.lower() and "memory" in text.lower():
            fail(12, text)
        fail(13, type(exc).__name__ + ": " + text)
    if isinstance(obj, torch.Tensor) or not isinstance(obj, dict):
        fail(11, describe(obj))
    picked, note = {}, ""
    if not flatten(obj, "", picked, 0):
        picked = None
        for key in ("state_dict", "model_state_dict", "model", "model_state", "net", "network", "weights", "params"):
            inner = {}
            if key in obj and flatten(obj[key], "", inner, 0):
                picked, note = inner, "used the state_dict stored under the key " + repr(key)
                break
        if picked is None:
            fail(11, describe(obj))
    tensors = {}
    for key, t in picked.items():
        if t.layout != torch.strided or t.is_quantized or t.is_complex():
            fail(14, "tensor " + repr(key) + " is not a plain dense real tensor (" + str(t.layout) + ", " + str(t.dtype) + ")")
        # clone: safetensors refuses tensors that share storage (tied weights, views)
        tensors[key] = t.detach().clone().contiguous()
    meta = {"order": json.dumps(list(tensors)), "note": note}
    out = save(tensors, metadata=meta)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()


main()
"""


# --- loading ------------------------------------------------------------------------------------


def check_torch_zip(data: bytes, name: str) -> bytes:
    """Validate a ``torch.save`` zip from its central directory; return the bytes of its ``data.pkl``.

    Only sizes and names are read here (plus ``data.pkl`` as raw bytes, never unpickled), so a zip bomb or a
    file that is not a torch.save archive is refused before a loader process is started.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f"{name}: the zip archive is truncated or corrupt ({exc}); copy or download the file again"
        ) from None
    if len(infos) > MAX_ZIP_MEMBERS:
        raise CheckpointError(f"{name}: the zip archive has {len(infos)} members; the limit is {MAX_ZIP_MEMBERS}")
    total = sum(i.file_size for i in infos)
    if total > MAX_ZIP_UNCOMPRESSED:
        raise CheckpointError(
            f"{name}: the zip archive unpacks to {total} bytes; the limit is {MAX_ZIP_UNCOMPRESSED} (2 GiB)"
        )
    for info in infos:
        if info.file_size > 2**20 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise CheckpointError(
                f"{name}: member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}-fold; "
                "refused as a possible zip bomb (torch.save stores tensors uncompressed)"
            )
    pickles = [i for i in infos if re.fullmatch(r"[^/]+/data\.pkl", i.filename)]
    if len(pickles) != 1:
        raise CheckpointError(
            f"{name}: this zip archive is not a torch.save file (it has {len(pickles)} '<name>/data.pkl' "
            "members, expected one)"
        )
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(
            f"{name}: data.pkl is {pickles[0].file_size} bytes; a state_dict's is far smaller "
            f"(limit {MAX_PICKLE_BYTES}), so this is not a plain state_dict"
        )
    try:
        return zf.read(pickles[0])
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"{name}: the zip archive is truncated or corrupt ({exc})") from None


def _size(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def _refusal_detail(stderr: str) -> str:
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", stderr)
    if found:
        return f"it references {found.group(1)}"
    found = re.search(r"(Unsupported [^.]{0,160})", stderr)
    return found.group(1).strip() if found else stderr.strip()[-300:]


def load_state_dict_safely(
    data: bytes,
    name: str,
    *,
    timeout_s: float = LOAD_TIMEOUT_S,
    memory_limit: int = MEMORY_LIMIT_BYTES,
) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Load a ``torch.save`` state_dict in a sandboxed child process.

    Returns (tensors, key order as saved, remarks). Raises CheckpointError for anything that is not a dict of
    tensors, including pickles that need code (refused by ``weights_only``), whole pickled modules, crashes,
    timeouts and files that need more than ``memory_limit`` bytes.
    """
    pkl = check_torch_zip(data, name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_FORCE")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # -P: do not put the working directory on sys.path; cwd is an empty temporary folder as well
    cmd = [sys.executable, "-P", "-c", _CHILD, str(int(memory_limit))]
    with tempfile.TemporaryDirectory(prefix="explorer-import-") as cwd:
        try:
            proc = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout_s, cwd=cwd, env=env)
        except subprocess.TimeoutExpired:
            raise CheckpointError(
                f"{name}: loading took longer than {timeout_s:g} s and was stopped; a state_dict of an autoencoder "
                "loads in seconds, so the file is probably not one"
            ) from None
        except OSError as exc:
            raise CheckpointError(f"{name}: could not start the loader process: {exc}") from None
    stderr = proc.stderr.decode("utf-8", "replace").strip()
    rc = proc.returncode
    if rc == _RC_REFUSED:
        whole_model = (b"_modules" in pkl and b"_parameters" in pkl) or "torch.nn.modules" in stderr
        if whole_model:
            raise CheckpointError(
                f"{name}: this file holds a whole pickled model, not a state_dict; save model.state_dict() "
                "instead: torch.save(model.state_dict(), 'model.pt')"
            )
        raise CheckpointError(
            f"{name}: the file contains objects other than tensors and was refused without running them "
            f"(torch.load weights_only: {_refusal_detail(stderr)}); save a plain state_dict with "
            "torch.save(model.state_dict(), 'model.pt')"
        )
    if rc == _RC_NOT_STATE:
        raise CheckpointError(
            f"{name}: the file holds {stderr or 'something else'}, not a state_dict (a dict of tensors); "
            "save one with torch.save(model.state_dict(), 'model.pt')"
        )
    if rc == _RC_MEMORY:
        raise CheckpointError(
            f"{name}: loading needed more than the {_size(memory_limit)} memory limit and was stopped; a state_dict "
            "of an autoencoder this app can show is far smaller"
        )
    if rc == _RC_TENSOR:
        raise CheckpointError(f"{name}: {stderr}; only dense float tensors can be imported")
    if rc == _RC_LOAD:
        raise CheckpointError(f"{name}: torch could not read this file ({stderr[:500]}); it is corrupt or truncated")
    if rc < 0:
        raise CheckpointError(
            f"{name}: the loader process was killed by signal {-rc} (out of memory or a corrupt file); "
            "nothing was imported"
        )
    if rc != 0:
        raise CheckpointError(f"{name}: the loader process failed (exit {rc}): {stderr[-500:]}")
    return _read_child_output(proc.stdout, name)


def safetensors_header(data: bytes, name: str) -> dict[str, Any]:
    """The JSON header of safetensors bytes (sizes checked; safetensors' own parser validates the offsets)."""
    if len(data) < 10:
        raise CheckpointError(f"{name}: {len(data)} bytes is too short for a safetensors file (truncated?)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > min(len(data) - 8, MAX_HEADER_BYTES):
        raise CheckpointError(
            f"{name}: the safetensors header claims {n} bytes; the file is truncated or not safetensors"
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{name}: the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name}: the safetensors header must be a JSON object")
    return header


def _load_safetensors(data: bytes, name: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load as st_load

    header = safetensors_header(data, name)
    try:
        # the reference parser checks every dtype, shape and offset against the buffer before allocating
        tensors = st_load(data)
    except Exception as exc:
        raise CheckpointError(f"{name}: the safetensors data could not be read ({exc})") from None
    return header, tensors


def _read_child_output(out: bytes, name: str) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    header, tensors = _load_safetensors(out, f"{name} (loader output)")
    meta = header.get("__metadata__") or {}
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
    header, tensors = _load_safetensors(data, name)
    if not tensors:
        raise CheckpointError(f"{name}: the safetensors file holds no tensors")
    entries = []
    for key, info in header.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if key != "__metadata__" and isinstance(offsets, list) and offsets:
            entries.append((offsets[0], key))
    order = [k for _, k in sorted(entries)]
    return tensors, order if sorted(order) == sorted(tensors) else list(tensors)


# --- layers -------------------------------------------------------------------------------------


@dataclass
class Layer:
    """One weight layer in forward order.

    ``weight`` is in torch layout: Linear (out, in); Conv2d (out, in, k, k); ConvTranspose2d (in, out, k, k).
    ``activation`` is what follows the layer when the file records it (Keras); None for a state_dict.
    """

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None
    activation: str | None = None

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    def describe(self) -> str:
        if self.weight.ndim == 2:
            return f"{self.name} {self.in_features}->{self.out_features}"
        return f"{self.name} {'x'.join(str(d) for d in self.weight.shape)}"


def _natural_key(key: str) -> tuple:
    """Sort key that puts fc10 after fc2 and an encoder before its decoder."""
    first = key.split(".", 1)[0].lower()
    rank = 1 if first.startswith("dec") else 0
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", key) if p)
    return (rank, parts)


def state_to_layers(state: dict[str, torch.Tensor], order: list[str], source: str) -> list[Layer]:
    """Group ``*.weight`` / ``*.bias`` pairs into layers in ``order``; refuse anything else by name."""
    import torch

    for key in order:
        t = state[key]
        if not t.is_floating_point():
            continue  # reported below as an unsupported parameter
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{source}: tensor {key!r} contains NaN or Inf values; the model is unusable")
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
            f"{source}: unsupported parameters: {shown}; only Linear layers (and the explorer's own conv layout) "
            "can be imported, not BatchNorm, LayerNorm, embeddings or other layers"
        )
    if not layers:
        raise CheckpointError(f"{source}: the state_dict has no Linear or Conv weights")
    return layers


def natural_order(order: list[str]) -> list[str]:
    return sorted(order, key=_natural_key)


# --- architecture -------------------------------------------------------------------------------


def widths(layers: list[Layer]) -> str:
    """'784-128-64-32' for a chain of Linear layers."""
    if not layers:
        return ""
    return "-".join(str(v) for v in [layers[0].in_features] + [layer.out_features for layer in layers])


def _listing(layers: list[Layer]) -> str:
    return ", ".join(layer.describe() for layer in layers)


def default_input_shape(size: int, given: tuple[int, int, int] | None, source: str) -> tuple[int, int, int]:
    """The (C, H, W) of a model whose first layer takes ``size`` values."""
    if given is not None:
        shape = tuple(int(v) for v in given)
        if len(shape) != 3 or math.prod(shape) != size:
            raise CheckpointError(
                f"{source}: input shape {shape} has {math.prod(shape)} values but the model's first layer takes "
                f"{size}; pass --input-shape C,H,W with C*H*W = {size}"
            )
        return shape  # type: ignore[return-value]
    if size in DEFAULT_SHAPES:
        return DEFAULT_SHAPES[size]
    known = ", ".join(f"{n} = {'x'.join(map(str, s))}" for n, s in DEFAULT_SHAPES.items())
    raise CheckpointError(
        f"{source}: the model takes {size} input values, which is not a known image size ({known}); "
        f"pass --input-shape C,H,W (input_shape=(C, H, W)) with C*H*W = {size} and C = 1 or 3"
    )


def _merge_vae_heads(layers: list[Layer], vae: bool) -> tuple[list[Layer], list[str]]:
    """Join two parallel heads (same shape, both reading the same input) into one mean+log-variance layer."""
    import torch

    for i in range(len(layers) - 1):
        a, b = layers[i], layers[i + 1]
        if a.weight.ndim != 2 or a.weight.shape != b.weight.shape or a.out_features == b.in_features:
            continue
        if i > 0 and layers[i - 1].out_features != a.in_features:
            continue
        if not vae:
            return layers, [f"{a.name} and {b.name} look like a VAE's mean and log-variance heads; pass --kind vae"]
        # the explorer's VAE chunks its encoder output as (mean, log-variance)
        if re.search(r"var|sigma|std", a.name, re.I) and not re.search(r"var|sigma|std", b.name, re.I):
            a, b = b, a
        bias_a = a.bias if a.bias is not None else torch.zeros(a.out_features)
        bias_b = b.bias if b.bias is not None else torch.zeros(b.out_features)
        merged = Layer(f"{a.name}+{b.name}", torch.cat([a.weight, b.weight]), torch.cat([bias_a, bias_b]), a.activation)
        note = f"joined the heads {a.name} (mean) and {b.name} (log-variance) into one layer"
        return layers[:i] + [merged] + layers[i + 2 :], [note]
    return layers, []


def _chain_error(layers: list[Layer], k: int, source: str, hints: list[str]) -> CheckpointError:
    a, b = layers[k], layers[k + 1]
    hint = ""
    if hints:
        hint = "; " + "; ".join(hints)
    elif a.out_features == 2 * b.in_features:
        hint = "; the encoder's last layer outputs twice the decoder's input, as a VAE's does: pass --kind vae"
    return CheckpointError(
        f"{source}: the layers do not form a chain: {a.name} outputs {a.out_features} features but the next layer "
        f"{b.name} takes {b.in_features}; layers found: {_listing(layers)}{hint}"
    )


def _check_chain(layers: list[Layer], source: str, hints: list[str]) -> None:
    for k in range(len(layers) - 1):
        if layers[k].out_features != layers[k + 1].in_features:
            raise _chain_error(layers, k, source, hints)


def split_mlp(groups: list[list[Layer]], kind: str, source: str) -> tuple[list[Layer], list[Layer], list[str]]:
    """Encoder and decoder layers of an MLP autoencoder, checked against the explorer's mirrored layout."""
    vae = kind == "vae"
    factor = 2 if vae else 1
    remarks: list[str] = []
    if len(groups) != 2:  # only an (encoder, decoder) pair fixes the split; anything else is one chain
        groups = [[layer for group in groups for layer in group]]
    if len(groups) == 1:
        layers, notes = _merge_vae_heads(groups[0], vae)
        hints = [] if vae else notes
        remarks += notes if vae else []
        if len(layers) < 2:
            raise CheckpointError(
                f"{source}: found only {_listing(layers)}; an autoencoder needs at least an encoder and a decoder layer"
            )
        breaks = [k for k in range(len(layers) - 1) if layers[k].out_features != layers[k + 1].in_features]
        if vae:
            junctions = [k for k in breaks if layers[k].out_features == 2 * layers[k + 1].in_features]
            if not junctions:
                raise CheckpointError(
                    f"{source}: kind vae needs an encoder whose last layer outputs 2 x latent values (mean and "
                    f"log-variance) before a decoder that takes latent values; layers found: {_listing(layers)}"
                )
            k = junctions[0]
            for j in breaks:
                if j != k:
                    raise _chain_error(layers, j, source, [])
        else:
            if breaks:
                raise _chain_error(layers, breaks[0], source, hints)
            outs = [layer.out_features for layer in layers[:-1]]
            k = outs.index(min(outs))  # the bottleneck
        encoder, decoder = layers[: k + 1], layers[k + 1 :]
    else:
        encoder, notes = _merge_vae_heads(groups[0], vae)
        decoder = groups[1]
        remarks += notes if vae else []
        for part in (encoder, decoder):
            _check_chain(part, source, [] if vae else notes)
        if encoder[-1].out_features != factor * decoder[0].in_features:
            need = "twice " if vae else ""
            raise CheckpointError(
                f"{source}: the encoder outputs {encoder[-1].out_features} values but the decoder takes "
                f"{decoder[0].in_features} (kind {kind} needs {need}the decoder's input); encoder "
                f"{_listing(encoder)}; decoder {_listing(decoder)}"
            )
    if encoder[0].in_features != decoder[-1].out_features:
        raise CheckpointError(
            f"{source}: the encoder takes {encoder[0].in_features} values but the decoder produces "
            f"{decoder[-1].out_features}; an autoencoder's output must match its input (layers: "
            f"{_listing(encoder + decoder)})"
        )
    hidden = [layer.out_features for layer in encoder[:-1]]
    mirrored = [layer.out_features for layer in decoder[:-1]]
    if mirrored != hidden[::-1]:
        latent = decoder[0].in_features
        expected = "-".join(str(v) for v in [latent, *hidden[::-1], decoder[-1].out_features])
        raise CheckpointError(
            f"{source}: the decoder does not mirror the encoder: encoder widths {widths(encoder)}, decoder widths "
            f"{widths(decoder)}; the explorer's MLP decoder uses the encoder's hidden widths in reverse "
            f"(expected decoder {expected})"
        )
    return encoder, decoder, remarks


def _resolve_activations(
    encoder: list[Layer],
    decoder: list[Layer],
    activation: str | None,
    latent_activation: str | None,
    source: str,
) -> tuple[str, str, bool]:
    """(hidden, latent, assumed): read from the layers when the file records them, else the arguments/defaults."""
    recorded = [layer.activation for layer in encoder + decoder]
    if any(a is None for a in recorded):
        return activation or "relu", latent_activation or "identity", True
    out = decoder[-1].activation
    if out != "sigmoid":
        raise CheckpointError(
            f"{source}: the decoder's last layer ({decoder[-1].name}) has activation {out!r}; the explorer's "
            "decoders end in a sigmoid (pixels in [0, 1]), so only models whose output layer uses sigmoid can be "
            "imported"
        )
    hidden_acts = {layer.activation for layer in encoder[:-1] + decoder[:-1]}
    if len(hidden_acts) > 1:
        per_layer = ", ".join(f"{layer.name}: {layer.activation}" for layer in encoder[:-1] + decoder[:-1])
        raise CheckpointError(
            f"{source}: the hidden layers use different activations ({per_layer}); the explorer's MLP uses one "
            "activation for all hidden layers"
        )
    hidden = hidden_acts.pop() if hidden_acts else (activation or "relu")
    latent = str(encoder[-1].activation)
    for flag, given, found in (
        ("--activation", activation, hidden),
        ("--latent-activation", latent_activation, latent),
    ):
        if given is not None and given != found:
            raise CheckpointError(f"{source}: the file says {found!r} but {flag} asks for {given!r}; drop the flag")
    return str(hidden), latent, False


def _build(kind: str, source: str, **fields: Any) -> Autoencoder:
    from explorer import registry

    try:
        return registry.build(registry.config_class(kind)(**fields))
    except ConfigError as exc:
        raise CheckpointError(f"{source}: the inferred architecture is not valid here: {exc}") from None


def copy_weights(model: Autoencoder, layers: list[Layer], source: str) -> None:
    """Load ``layers`` into ``model``'s Linear/Conv layers in order (strict: every key, every shape)."""
    import torch
    from torch import nn

    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
    ours = ", ".join(f"{n} {'x'.join(str(d) for d in m.weight.shape)}" for n, m in targets)
    if len(targets) != len(layers) or any(
        tuple(m.weight.shape) != tuple(layer.weight.shape) for (_, m), layer in zip(targets, layers)
    ):
        raise CheckpointError(
            f"{source}: the layers found ({_listing(layers)}) do not match the explorer's layout for this "
            f"architecture ({ours})"
        )
    state: dict[str, torch.Tensor] = {}
    for (tname, module), layer in zip(targets, layers):
        state[f"{tname}.weight"] = layer.weight.to(torch.float32)
        # a layer saved without a bias is the same function as one with a zero bias
        bias = layer.bias if layer.bias is not None else torch.zeros_like(module.bias)
        state[f"{tname}.bias"] = bias.to(torch.float32)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: the weights do not fit the inferred model: {exc}") from None


def _mlp_model(
    groups: list[list[Layer]],
    *,
    kind: str,
    input_shape: tuple[int, int, int] | None,
    activation: str | None,
    latent_activation: str | None,
    source: str,
) -> tuple[Autoencoder, dict[str, Any]]:
    encoder, decoder, remarks = split_mlp(groups, kind, source)
    shape = default_input_shape(encoder[0].in_features, input_shape, source)
    hidden, latent, assumed = _resolve_activations(encoder, decoder, activation, latent_activation, source)
    model = _build(
        kind,
        source,
        input_shape=shape,
        latent_dim=decoder[0].in_features,
        backbone="mlp",
        hidden=tuple(layer.out_features for layer in encoder[:-1]),
        activation=hidden,
        latent_activation=latent,
    )
    copy_weights(model, encoder + decoder, source)
    missing_bias = [layer.name for layer in encoder + decoder if layer.bias is None]
    if missing_bias:
        remarks.append(f"layers without a bias got a zero bias: {', '.join(missing_bias)}")
    info = {
        "encoder": widths(encoder),
        "decoder": widths(decoder),
        "activations": {"hidden": hidden, "latent": latent, "output": "sigmoid"},
        "activations_assumed": assumed,
        "remarks": remarks,
    }
    return model, info


def _conv_model(
    groups: list[list[Layer]],
    *,
    kind: str,
    input_shape: tuple[int, int, int] | None,
    activation: str | None,
    latent_activation: str | None,
    source: str,
) -> tuple[Autoencoder, dict[str, Any]]:
    layers = [layer for group in groups for layer in group]
    pattern = "".join("c" if layer.weight.ndim == 4 else "l" for layer in layers)
    match = re.fullmatch(r"(c+)(l+)(c+)", pattern)
    supported = (
        "only the explorer's own conv layout can be imported: Conv2d(kernel 4, stride 2, padding 1) stages, "
        "then Linear layers (optionally a dense layer each side), then ConvTranspose2d(kernel 4, stride 2, "
        "padding 1) stages back"
    )
    if not match or len(match.group(1)) != len(match.group(3)) or len(match.group(2)) not in (2, 4):
        raise CheckpointError(f"{source}: conv layout not recognised; layers found: {_listing(layers)}; {supported}")
    n = len(match.group(1))
    convs, linears = layers[:n], layers[n : n + len(match.group(2))]
    hidden = tuple(layer.out_features for layer in convs)
    channels = convs[0].in_features
    dense = linears[0].out_features if len(linears) == 4 else 0
    latent = linears[len(linears) // 2].in_features
    flat = linears[0].in_features
    if input_shape is None:
        side = math.isqrt(flat // hidden[-1]) if flat % hidden[-1] == 0 else 0
        if side < 1 or side * side * hidden[-1] != flat:
            raise CheckpointError(
                f"{source}: cannot work out the image size from a flattened conv output of {flat} values; "
                "pass --input-shape C,H,W"
            )
        input_shape = (channels, side * 2**n, side * 2**n)
    hidden_act, latent_act = activation or "relu", latent_activation or "identity"
    model = _build(
        kind,
        source,
        input_shape=input_shape,
        latent_dim=latent,
        backbone="conv",
        hidden=hidden,
        dense=dense,
        activation=hidden_act,
        latent_activation=latent_act,
    )
    try:
        copy_weights(model, layers, source)
    except CheckpointError:
        raise CheckpointError(
            f"{source}: conv layout not recognised; layers found: {_listing(layers)}; {supported}"
        ) from None
    info = {
        "encoder": f"conv {channels}->{'->'.join(map(str, hidden))}, dense {dense or 'none'}, latent {latent}",
        "decoder": "mirrored (ConvTranspose2d)",
        "activations": {"hidden": hidden_act, "latent": latent_act, "output": "sigmoid"},
        "activations_assumed": True,
        "remarks": [],
    }
    return model, info


def model_from_layers(
    groups: list[list[Layer]],
    *,
    kind: str = "ae",
    input_shape: tuple[int, int, int] | None = None,
    activation: str | None = None,
    latent_activation: str | None = None,
    source: str = "model",
) -> tuple[Autoencoder, dict[str, Any]]:
    """Build an explorer model from layers in forward order.

    ``groups`` is one list (the split is inferred) or two (encoder, decoder). Returns the model in eval mode and
    a JSON-ready description of what was inferred.
    """
    from explorer.models.backbones import ACTIVATIONS

    if kind not in IMPORTABLE_KINDS:
        raise CheckpointError(
            f"kind {kind!r} cannot be imported; importable kinds: {', '.join(IMPORTABLE_KINDS)} "
            "(a sparse autoencoder's decoder is a dictionary, not a layer stack)"
        )
    for flag, value in (("--activation", activation), ("--latent-activation", latent_activation)):
        if value is not None and value not in ACTIVATIONS:
            raise CheckpointError(f"unknown {flag} {value!r}; known: {', '.join(ACTIVATIONS)}")
    layers = [layer for group in groups for layer in group]
    opts = dict(
        kind=kind, input_shape=input_shape, activation=activation, latent_activation=latent_activation, source=source
    )
    if any(layer.weight.ndim == 4 for layer in layers):
        model, info = _conv_model(groups, **opts)  # type: ignore[arg-type]
    else:
        model, info = _mlp_model(groups, **opts)  # type: ignore[arg-type]
    return model.eval(), info


def import_state_dicts(
    files: list[tuple[str, dict[str, torch.Tensor], list[str]]],
    **options: Any,
) -> tuple[Autoencoder, dict[str, Any]]:
    """Build a model from one state_dict, or two (encoder then decoder).

    Each entry is (file name, tensors, key order as stored). The stored order is tried first, then a natural
    sort (for files whose order was lost, such as safetensors); the first that forms a valid model wins.
    """
    names = ", ".join(name for name, _, _ in files)
    source = options.pop("source", names)
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
            model, info = model_from_layers(groups, source=source, **options)
        except CheckpointError as exc:
            first_error = first_error or exc
            continue
        info["remarks"] = remarks + info["remarks"]
        return model, info
    assert first_error is not None
    raise first_error
