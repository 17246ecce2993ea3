"""Run ``child.py`` on a stranger's file with a memory cap and a time limit, and take back only tensors.

The parsers that could be made to run code or corrupt memory (torch's unpickler, the HDF5 library) run in
that child, never in the server: the worst a hostile file can do there is fail, time out or run out of
memory, and each of those becomes a ``CheckpointError`` here. What comes back is safetensors bytes, validated
like any other stranger's before a tensor is built.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorer.errors import CheckpointError
from explorer.untrusted import human_size, load_safetensors
from explorer.untrusted.child import OUT_OF_MEMORY, REFUSED

if TYPE_CHECKING:
    import torch

CHILD = Path(__file__).with_name("child.py")
MEMORY_LIMIT_BYTES = 4 * 2**30  # what the child may map on top of the interpreter and its libraries
TIMEOUT_S = 60.0


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
        header, tensors = load_safetensors(proc.stdout, label=f"{label} (loader output)")
        return tensors, header.get("__metadata__") or {}
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
