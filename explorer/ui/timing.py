"""Opt-in timing marks for the benchmark: set EXPLORER_TIMING_FILE and each mark appends a JSON line."""

from __future__ import annotations

import json
import os
import time


def mark(event: str, **fields) -> None:
    path = os.environ.get("EXPLORER_TIMING_FILE")
    if not path:
        return
    with open(path, "a") as fh:
        fh.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
