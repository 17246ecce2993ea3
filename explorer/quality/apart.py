"""The metrics report (``quality_report``) computed in a child process, for a long-running server.

A report encodes whole splits, fits PCA on the training images and trains probes with scikit-learn: done in
the server, that leaves scikit-learn's modules and the training split behind for good (measured over a long
session, about 90 MB of the server's memory for one report). Done here, the child holds all of it and exits;
the server receives the report as JSON. The child reads and writes the same disk cache, so a report computed
once (here, by ``python -m explorer metrics`` or by another replica) is read back in a second or two.

Progress is streamed back a line at a time; a parent that stops waiting (the person left the page) kills
the child.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from explorer.errors import ExplorerError, MetricsError
from explorer.quality.metrics import QualityOptions, QualityReport, quality_report
from explorer.store import DiskCache

ROOT = Path(__file__).resolve().parents[2]  # where ``explorer`` imports from, installed or not


def report_apart(
    checkpoint: str | os.PathLike | bytes,
    digest: str,
    input_shape: tuple[int, int, int],
    dataset: str,
    *,
    split: str = "test",
    options: QualityOptions | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: Callable[[float, str], None] = lambda f, m: None,
) -> tuple[QualityReport, bool]:
    """``quality_report`` for the checkpoint file at ``checkpoint`` (or its bytes), run in a child process;
    returns the report and whether it came from the cache. Its refusals arrive as MetricsError with the
    child's own message."""
    with tempfile.TemporaryDirectory(prefix="explorer-metrics-") as tmp:
        path = Path(tmp, "checkpoint.safetensors")
        if isinstance(checkpoint, bytes):
            path.write_bytes(checkpoint)
        else:
            path = Path(checkpoint)
        request = {
            "checkpoint": str(path), "digest": digest, "input_shape": list(input_shape), "dataset": dataset,
            "split": split, "options": asdict(options or QualityOptions()), "cache_dir": None if cache_dir is None else str(cache_dir),
        }  # fmt: skip
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
        with open(Path(tmp, "stderr"), "w+") as errors:
            proc = subprocess.Popen(
                [sys.executable, "-m", "explorer.quality.apart"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True, env=env,
            )  # fmt: skip
            try:
                answer = _talk(proc, request, progress)
            finally:
                if proc.poll() is None:  # the caller stopped waiting: nobody will read what it computes
                    proc.kill()
                proc.wait()
            errors.seek(0)
            tail = errors.read().strip().splitlines()[-1:]
    if "report" in answer:
        return QualityReport.from_dict(answer["report"]), bool(answer["cached"])
    if "error" in answer:
        raise MetricsError(answer["error"])
    raise MetricsError(f"the metrics process ended without a report (exit {proc.returncode}): {' '.join(tail)}")


def _talk(proc: subprocess.Popen, request: dict, progress: Callable[[float, str], None]) -> dict:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(request))
    proc.stdin.close()
    for line in proc.stdout:
        try:
            message = json.loads(line)
        except ValueError:
            continue  # something a library printed
        if isinstance(message, dict) and "progress" in message:
            progress(float(message["progress"]), str(message["message"]))
        elif isinstance(message, dict):
            return message
    return {}


def _child() -> None:
    from explorer.checkpoint import load_checkpoint  # torch: in the child only

    request = json.load(sys.stdin)

    def say(message: dict) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    def model():
        import torch

        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))  # the child's one job: every core it can use
        return load_checkpoint(request["checkpoint"])

    try:
        report, cached = quality_report(
            model,
            request["digest"],
            tuple(request["input_shape"]),
            request["dataset"],
            split=request["split"],
            options=QualityOptions(**{**request["options"], "curve": tuple(request["options"]["curve"])}),
            cache=None if request["cache_dir"] is None else DiskCache(Path(request["cache_dir"])),
            progress=lambda f, m: say({"progress": f, "message": m}),
        )
    except ExplorerError as exc:
        say({"error": str(exc)})
        return
    say({"report": report.to_dict(), "cached": cached})


if __name__ == "__main__":
    _child()
