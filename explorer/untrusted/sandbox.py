"""Run ``child.py`` on a stranger's file with a memory cap and a time limit, and take back only data.

The parsers that could be made to run code or corrupt memory (torch's unpickler, the HDF5 library, protobuf
and onnxruntime on an ONNX graph) run in that child, never in the server: the worst a hostile file can do
there is fail, time out or run out of memory, and each of those becomes a ``CheckpointError`` here. What comes
back is safetensors bytes, validated like any other stranger's before a tensor is built, or (onnx) a small JSON
description of a graph that the server may then hand to onnxruntime itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorer.errors import CheckpointError
from explorer.untrusted.child import OUT_OF_MEMORY, REFUSED
from explorer.untrusted.files import MAX_FILE_BYTES, human_size
from explorer.untrusted.safetensors_file import load_safetensors

if TYPE_CHECKING:
    import torch

CHILD = Path(__file__).with_name("child.py")
MEMORY_LIMIT_BYTES = 4 * 2**30  # what the child may map on top of the interpreter and its libraries
TIMEOUT_S = 60.0
# An ONNX autoencoder has hundreds of operators and layers of millions of values at most.
MAX_ONNX_NODES = 20_000
MAX_TENSOR_ELEMENTS = 2**28
MAX_REMEMBERED = 1024
_ONNX_CHECKED: dict[str, dict[str, Any]] = {}  # SHA-256 of a graph that passed -> the child's description
_ONNX_LOCK = threading.Lock()


def run_child(
    mode: str,
    payload: bytes,
    *,
    label: str,
    request: dict[str, Any] | None = None,
    timeout_s: float = TIMEOUT_S,
    memory_limit: int = MEMORY_LIMIT_BYTES,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, string metadata) parsed from ``payload`` by the child in ``mode`` (torch or keras-h5).

    ``label`` (the file name) starts every message; ``request`` is passed to the child as JSON.
    """
    out = _run(mode, payload, label=label, request=request, timeout_s=timeout_s, memory_limit=memory_limit)
    header, tensors = load_safetensors(out, label=f"{label} (loader output)")
    return tensors, header.get("__metadata__") or {}


def check_onnx(payload: bytes, *, label: str, timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """The child's description of an ONNX graph (see ``child_onnx.py``), after its checks and one run on zeros.

    A graph that passed is remembered by its SHA-256 for the life of the process, so a model loaded again (or
    shared by sessions) is not checked again; a refusal is not remembered.
    """
    digest = hashlib.sha256(payload).hexdigest()
    with _ONNX_LOCK:
        known = _ONNX_CHECKED.get(digest)
    if known is not None:
        return known
    request = {"max_nodes": MAX_ONNX_NODES, "max_elements": MAX_TENSOR_ELEMENTS, "max_bytes": MAX_FILE_BYTES}
    out = _run("onnx", payload, label=label, request=request, timeout_s=timeout_s)
    try:
        description = json.loads(out.decode("utf-8"))
        if not isinstance(description, dict):
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError(f"{label}: the loader process answered with something other than a graph") from None
    with _ONNX_LOCK:
        if len(_ONNX_CHECKED) >= MAX_REMEMBERED:
            del _ONNX_CHECKED[next(iter(_ONNX_CHECKED))]  # the oldest
        _ONNX_CHECKED[digest] = description
    return description


def _run(
    mode: str,
    payload: bytes,
    *,
    label: str,
    request: dict[str, Any] | None,
    timeout_s: float,
    memory_limit: int = MEMORY_LIMIT_BYTES,
) -> bytes:
    """The child's stdout after it succeeded in ``mode``; every other ending is a CheckpointError."""
    # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD would switch weights_only off inside torch.load
    env = {k: v for k, v in os.environ.items() if not k.startswith("TORCH_FORCE")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # -P: neither the script's folder nor the working directory (a fresh one, below) goes on sys.path
    cmd = [sys.executable, "-P", str(CHILD), mode]
    with tempfile.TemporaryDirectory(prefix="explorer-import-") as cwd:
        # the request is a file in the child's working directory, so stdin carries the payload without a copy
        Path(cwd, "request.json").write_text(
            json.dumps({"memory_limit": int(memory_limit), **(request or {})}), "utf-8"
        )
        try:
            proc = subprocess.run(cmd, input=payload, capture_output=True, timeout=timeout_s, cwd=cwd, env=env)
        except subprocess.TimeoutExpired:
            raise CheckpointError(
                f"{label}: reading took longer than {timeout_s:g} s and was stopped; an autoencoder's weights load "
                "in seconds, so the file is probably not one"
            ) from None
        except OSError as exc:
            raise CheckpointError(f"{label}: could not start the loader process ({exc.strerror})") from None
    rc = proc.returncode
    if rc == 0:
        return proc.stdout
    if rc == REFUSED:
        raise CheckpointError(f"{label}: {_message(proc.stdout)}")
    if rc == OUT_OF_MEMORY:
        raise CheckpointError(
            f"{label}: reading needed more than the {human_size(memory_limit)} memory limit and was stopped; the "
            "weights of an autoencoder this app can show need far less"
        )
    if rc < 0:
        raise CheckpointError(
            f"{label}: the loader process was killed by signal {-rc} (out of memory or a corrupt file); "
            "nothing was imported"
        )
    detail = _last_line(proc.stderr)
    raise CheckpointError(
        f"{label}: the loader process stopped with exit code {rc}{f' ({detail})' if detail else ''}; the file is "
        "damaged or needs more memory than allowed, and nothing was imported"
    )


def _message(stdout: bytes) -> str:
    try:
        message = json.loads(stdout.decode("utf-8"))["message"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        message = None
    return message if isinstance(message, str) else "the loader refused the file without saying why"


def _last_line(stderr: bytes) -> str:
    """The last line of the child's stderr (a traceback ends with the exception) when it is short and clean."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return "" if len(last) > 300 or re.search(r" at 0x[0-9a-fA-F]+", last) else last
