"""Faults a long-running server meets: a writer killed mid-write (kill -9), and two server processes computing
the same map into one shared cache folder. Real processes, real signals, real files."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from explorer.kept import KeptUploads
from explorer.store import STALE_TMP_S, DiskCache

ROOT = Path(__file__).resolve().parents[2]
SIZE = 24 * 2**20  # each file: big enough that a kill lands inside a write


def _writer(folder: Path, kept: bool) -> subprocess.Popen:
    """A process that writes files of SIZE bytes into ``folder`` (a map cache, or the kept uploads) until killed."""
    code = textwrap.dedent(f"""
        import itertools, sys
        from pathlib import Path
        from explorer.kept import KeptUploads
        from explorer.store import DiskCache
        folder = Path({str(folder)!r})
        store = KeptUploads(folder, max_bytes=2**34, max_age_s=3600) if {kept} else DiskCache(folder, 2**34)
        for i in itertools.count():
            data = bytes([i % 251]) * {SIZE}
            store.put(data) if {kept} else store.put(f"{{i:064x}}", data)
            print(i, flush=True)
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)


def _kill_mid_write(proc: subprocess.Popen, folder: Path) -> None:
    assert proc.stdout is not None
    proc.stdout.readline()  # one file is whole: the next write is under way
    deadline = time.monotonic() + 30
    while not any(p.name.endswith(".tmp") for p in folder.iterdir()):  # a temporary file is being written
        assert time.monotonic() < deadline and proc.poll() is None, "the writer never started a second file"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_map_cache_writer_killed_mid_write_leaves_whole_files_or_none(tmp_path):
    folder = tmp_path / "maps"
    folder.mkdir()
    _kill_mid_write(_writer(folder, kept=False), folder)
    cache = DiskCache(folder, 2**34)  # the restarted server's
    stored = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    assert stored, "the first file was written whole"
    for p in stored:
        i = int(p.stem, 16)
        assert cache.get(p.stem) == bytes([i % 251]) * SIZE  # whole and checked: never torn
    assert any(p.name.startswith(".") for p in folder.iterdir())  # what the killed writer left...
    cache.prune(now=time.time() + STALE_TMP_S + 1)
    assert not any(p.name.startswith(".") for p in folder.iterdir())  # ...goes once it is stale


def test_a_kept_upload_writer_killed_mid_write_leaves_whole_files_or_none(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    _kill_mid_write(_writer(folder, kept=True), folder)
    kept = KeptUploads(folder, max_bytes=2**34, max_age_s=3600)
    stored = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert stored
    for p in stored:
        data = kept.get(p.name.split(".")[0])
        assert data is not None and len(data) == SIZE and data == data[:1] * SIZE


def test_two_servers_computing_one_map_into_one_folder_agree(tmp_path):
    """Two processes (replicas) sharing a cache folder compute the same new map at the same moment: no error,
    no damaged file, and both get the same map; a third reads it from the folder."""
    code = textwrap.dedent(f"""
        import numpy as np, sys
        from pathlib import Path
        from explorer import models
        from explorer.checkpoint import checkpoint_bytes, load_checkpoint
        from explorer.maps.pipeline import compute_map
        from explorer.maps.projection import ProjectionParams
        from explorer.store import DiskCache, sha256
        import torch
        torch.manual_seed(0)
        raw = checkpoint_bytes(models.build(models.config_class("ae")(hidden=(32,), latent_dim=4)))
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(600, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 3, size=600)
        Path(sys.argv[1]).write_bytes(raw)
        md = compute_map(load_checkpoint(raw), sha256(raw), images, labels, [], ProjectionParams(n_neighbors=10),
                         DiskCache(Path({str(tmp_path / "cache")!r})))
        np.save(sys.argv[2], md.projection.embedding)
    """)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / f"ckpt{k}"), str(tmp_path / f"map{k}.npy")],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for k in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    a, b = np.load(tmp_path / "map0.npy"), np.load(tmp_path / "map1.npy")
    assert np.array_equal(a, b)  # one map, computed twice identically or once and read
    cache = DiskCache(tmp_path / "cache", 2**34)
    files = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert len(files) == 2 and all(cache.get(p.stem) is not None for p in files)  # the latents and the map, whole


def test_a_cache_that_cannot_be_written_leaves_maps_served_and_says_so_once(tmp_path):
    """A full disk, simulated by a file-size limit of 4 KB for the process (writes fail with EFBIG, as they fail
    with ENOSPC on a full disk): two maps are still computed and returned, the log says it once."""
    code = textwrap.dedent(f"""
        import logging, resource, signal, sys
        import numpy as np
        from pathlib import Path
        from explorer import models, store
        from explorer.checkpoint import checkpoint_bytes, load_checkpoint
        from explorer.maps.pipeline import compute_map
        from explorer.maps.projection import ProjectionParams
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
        raw = checkpoint_bytes(models.build(models.config_class("ae")(hidden=(32,), latent_dim=4)))
        model, rng = load_checkpoint(raw), np.random.default_rng(0)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        cache = store.DiskCache(Path({str(tmp_path / "cache")!r}))
        for seed in (1, 2):
            images = rng.integers(0, 256, size=(400, 28, 28), dtype=np.uint8)
            md = compute_map(model, "a" * 64, images, np.zeros(400, int), [], ProjectionParams("pca", 2), cache)
            assert md.projection.embedding.shape == (400, 2) and md.source == "computed"
        print(list(store.write_problems().values()))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['File too large']"
    warnings = [line for line in done.stderr.splitlines() if "cannot write to" in line]
    assert len(warnings) == 1 and "results are kept in memory only" in warnings[0], done.stderr
