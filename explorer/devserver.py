"""A real ``streamlit run app.py`` on a free loopback port, for the browser tests and the benchmarks.

The server is a child process and readiness is its health endpoint, so this module needs
neither Streamlit nor any test code. It serves the app.py of a source checkout, or another
page script of it (the latency benchmark's bare comparison page).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
CHROMIUM = os.environ.get("EXPLORER_CHROMIUM", "/usr/bin/chromium")
# no sandbox: CI containers run as root; the rest keeps Chromium off the network and quiet
CHROMIUM_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
)  # fmt: skip
HEALTHY_WITHIN_S = 60.0


def free_port() -> int:
    """A loopback port that was free a moment ago (the server binds it next; a race is unlikely)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"streamlit did not become healthy within {HEALTHY_WITHIN_S:.0f} s; log: {log_path}")


@contextmanager
def running_app(
    cache_dir: Path, log_path: Path, extra_env: Mapping[str, str] | None = None, *, script: Path = APP
) -> Iterator[str]:
    """Serve ``script`` (app.py unless told) until the block ends; yields its URL once ``/_stcore/health`` answers.

    ``cache_dir`` becomes EXPLORER_CACHE_DIR so runs never share maps; the server's output goes
    to ``log_path``.
    """
    if not script.exists():
        raise FileNotFoundError(f"{script} not found: pages are served from a source checkout of the repository")
    port = free_port()
    # as scripts/run.sh and the Dockerfile serve it (MALLOC_ARENA_MAX: see there)
    env = {"MALLOC_ARENA_MAX": "2", **os.environ, "EXPLORER_CACHE_DIR": str(cache_dir), **(extra_env or {})}
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(script),
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            _wait_healthy(proc, url, Path(log_path))
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
