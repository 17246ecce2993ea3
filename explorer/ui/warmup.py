"""The server's background warm-up: umap-learn's numba code compiled in a child process once the server is
first quiet, so choosing the reference engine later takes seconds, not a minute."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque

import streamlit as st

from explorer.maps.projection import warm_reference_umap_apart

QUIET_WINDOW_S = 10.0
QUIET_SHARE = 0.15  # of one core


def wait_until_quiet(window_s: float = QUIET_WINDOW_S, share: float = QUIET_SHARE, poll_s: float = 1.0) -> None:
    """Return once this process has used less than ``share`` of one core over the last ``window_s`` seconds:
    nobody is waiting on the server. The warm-up's child then neither slows anyone down nor adds its memory to a
    busy server's."""
    seen: deque[tuple[float, float]] = deque()
    while True:
        now, cpu = time.monotonic(), time.process_time()  # CPU seconds of every thread of this process
        seen.append((now, cpu))
        while now - seen[0][0] > window_s:
            seen.popleft()
        t0, cpu0 = seen[0]
        if now - t0 >= 0.9 * window_s and (cpu - cpu0) / (now - t0) < share:
            return
        time.sleep(poll_s)


WARM_ENV = "EXPLORER_WARM_UMAP"  # "0": do not compile umap-learn in the background (the tests set it)
WARM_DELAY_S = 20.0  # after the first page: the first map and model load do not share the CPU with it


@st.cache_resource(show_spinner=False)  # one status dict per server
def warm_reference_umap() -> dict:
    """Once per server: compile umap-learn's numba code in a child process (see
    ``projection.warm_reference_umap_apart``), started by a background thread once the server is first quiet, so
    choosing the reference engine later takes seconds, not a minute, and the server holds none of it until then.
    Returns a status dict the sidebar reads ("ready": bool)."""
    status: dict = {"ready": False, "seconds": None, "error": None}
    if os.environ.get(WARM_ENV, "1") == "0":
        status["error"] = f"not warmed ({WARM_ENV}=0)"
        return status

    def work() -> None:
        time.sleep(WARM_DELAY_S)
        wait_until_quiet()
        try:
            status["seconds"] = warm_reference_umap_apart()
            status["ready"] = True
            logging.getLogger("explorer").warning("reference UMAP (umap-learn) warm in %.1f s", status["seconds"])
        except Exception as exc:  # an optional engine: its failure is reported in the sidebar, never fatal
            status["error"] = repr(exc)

    threading.Thread(target=work, name="warm-umap-learn", daemon=True).start()
    return status
