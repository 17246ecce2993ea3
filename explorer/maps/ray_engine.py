"""The Ray engine of ``python -m explorer encode``: the same shards as the local engine, from many workers.

The images still to encode become a Ray dataset of index ranges (``batch_size`` images each, aligned to
the shards, so every worker sees the batches the local engine would). ``map_batches`` runs ``RowsOf``, a
callable class: each worker opens the source again from its spec (a name and a location, never an open
object) and loads ONE copy of the model in ``__init__``, on its own GPU where the cluster has GPUs. It
returns a row per image, encoded or skipped; the driver gathers the rows by shard and writes each shard
once whole, in id order, through ``explorer.maps.shards``. ray is imported inside the functions.

Ray starts locally unless given an address (``--ray-address auto`` or ``ray://host:10001`` joins a cluster;
every node then needs the explorer installed and the source's location readable).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from explorer.errors import ExplorerError
from explorer.maps.encode_job import Advance, ShardWritten, Summary, ignore
from explorer.maps.shards import Manifest, Rows, SourceSpec, write_shard

INSTALL_HINT = 'the Ray engine needs Ray Data: pip install "latent-explorer[scale]" (or "ray[data]>=2.40")'
SKIPPED = "skipped"  # the column giving why an image was skipped, "" for the ones encoded


def ray_available() -> bool:
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join the cluster at ``address``, or start a local Ray (no dashboard, quiet logs); True when this call
    started or joined it (and so should shut it down), False when this process was already connected."""
    try:
        import ray
    except ImportError:
        raise ExplorerError(INSTALL_HINT) from None
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if address:
        ray.init(address=address, **quiet)
    else:
        # local workers import the same explorer as this process, wherever it is installed or checked out
        root = str(Path(__file__).resolve().parents[2])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, runtime_env={"env_vars": {"PYTHONPATH": path}}, **quiet)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the command draws its own
    ctx.print_on_execution_start = False
    return True


class RowsOf:
    """A Ray Data worker: one model copy, the source opened again; index ranges in, one row per image out."""

    def __init__(
        self, checkpoint: Any, spec: SourceSpec, stats: tuple[str, ...], batch_size: int, device: str, threads: int
    ) -> None:
        import torch

        from explorer.checkpoint import load_checkpoint

        torch.set_num_threads(max(1, threads))
        if not isinstance(checkpoint, bytes):  # a reference into Ray's object store: one copy per node
            import ray

            checkpoint = ray.get(checkpoint)
        self.model = load_checkpoint(checkpoint, device=device)
        self.source = spec.open()
        self.stats, self.batch_size = stats, batch_size

    def __call__(self, ranges: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from explorer.data.source import batches
        from explorer.maps.encode_job import rows_of

        dim = self.model.latent_dim
        parts = [
            rows_of(self.model, batch, self.stats)
            for lo, hi in zip(ranges["first"], ranges["stop"])
            for batch in batches(self.source, self.batch_size, self.model.input_shape, start=int(lo), stop=int(hi))
        ]
        rows = Rows.join(parts, dim, self.stats)
        gone = np.array([i for i, _ in rows.skipped], np.int64)
        n = len(gone)
        return {
            "id": np.concatenate([rows.ids, gone]),
            "latent": np.concatenate([rows.latents, np.full((n, dim), np.nan, np.float32)]),
            "recon_error": np.concatenate([rows.recon_error, np.full(n, np.nan, np.float32)]),
            **{f"stat:{s}": np.concatenate([rows.stats[s], np.full(n, np.nan, np.float32)]) for s in self.stats},
            "label": np.concatenate([rows.labels, np.full(n, -1, np.int64)]),
            "where": np.array([*rows.where, *([""] * n)], dtype=object),
            SKIPPED: np.array([""] * len(rows) + [why for _, why in rows.skipped], dtype=object),
        }


def _rows(batch: dict[str, np.ndarray], stats: tuple[str, ...], dim: int) -> Rows:
    """A batch of the workers' output as Rows, the skipped images set apart."""
    why = np.asarray(batch[SKIPPED], dtype=object)
    ok = why == ""
    ids = np.asarray(batch["id"], np.int64)
    return Rows(
        ids[ok],
        np.asarray(batch["latent"], np.float32).reshape(-1, dim)[ok],
        np.asarray(batch["recon_error"], np.float32)[ok],
        {s: np.asarray(batch[f"stat:{s}"], np.float32)[ok] for s in stats},
        np.asarray(batch["label"], np.int64)[ok],
        [str(w) for w in np.asarray(batch["where"], dtype=object)[ok]],
        [(int(i), str(w)) for i, w in zip(ids[~ok], why[~ok])],
    )


def encode_ray(
    checkpoint: bytes,
    manifest: Manifest,
    todo: list[int],
    folder,
    *,
    batch_size: int = 256,
    num_workers: int | None = None,
    address: str | None = None,
    device: str = "auto",
    advance: Advance = ignore,
    shard_written: ShardWritten = ignore,
) -> Summary:
    """Write shards ``todo`` with Ray Data: ``num_workers`` model copies (default: one per GPU of the cluster,
    else one per CPU), each on a GPU when ``device`` is cuda, or auto and the cluster has GPUs."""
    summary, t0 = Summary(), time.perf_counter()
    started = start_ray(address, None if address else max(num_workers or 0, os.cpu_count() or 1))
    import ray

    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        if device == "cuda" and gpus == 0:
            raise ExplorerError("--device cuda, but the Ray cluster has no GPUs (try --device auto)")
        on_gpu = device == "cuda" or (device == "auto" and gpus > 0)
        workers = max(1, num_workers or (gpus if on_gpu else cpus))
        ranges = manifest.ranges()
        blocks = [
            {"first": lo, "stop": min(lo + batch_size, ranges[k][1])}
            for k in todo
            for lo in range(ranges[k][0], ranges[k][1], batch_size)
        ]
        if not blocks:
            return summary
        ds = ray.data.from_items(blocks).map_batches(
            RowsOf,
            batch_size=1,  # one range (one model batch) per call
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={
                "checkpoint": ray.put(checkpoint),
                "spec": manifest.source,
                "stats": manifest.stats,
                "batch_size": batch_size,
                "device": "cuda" if on_gpu else "cpu",
                "threads": 1 if on_gpu else max(1, cpus // workers),
            },
            num_gpus=1 if on_gpu else 0,
            num_cpus=1,
        )
        pending: dict[int, list[Rows]] = {k: [] for k in todo}
        seen = dict.fromkeys(todo, 0)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            got = _rows(batch, manifest.stats, manifest.latent_dim)
            advance(len(got) + len(got.skipped))
            for k in np.unique(
                np.concatenate([got.ids, [i for i, _ in got.skipped]]).astype(np.int64) // manifest.shard_size
            ):
                k = int(k)
                lo, hi = ranges[k]
                part = _select(got, lo, hi)
                pending[k].append(part)
                seen[k] += len(part) + len(part.skipped)
                if seen[k] == hi - lo:
                    rows = Rows.join(pending.pop(k), manifest.latent_dim, manifest.stats)
                    write_shard(folder, k, rows, manifest)
                    summary.encoded += len(rows)
                    summary.skipped += len(rows.skipped)
                    summary.written.append(k)
                    shard_written(k, rows)
        if pending:
            raise ExplorerError(f"Ray returned too few rows for shards {sorted(pending)}")
    finally:
        if started:
            ray.shutdown()
    summary.written.sort()
    summary.seconds = time.perf_counter() - t0
    return summary


def _select(rows: Rows, lo: int, hi: int) -> Rows:
    """The rows of ids [lo, hi)."""
    keep = (rows.ids >= lo) & (rows.ids < hi)
    return Rows(
        rows.ids[keep],
        rows.latents[keep],
        rows.recon_error[keep],
        {s: v[keep] for s, v in rows.stats.items()},
        rows.labels[keep],
        [w for w, k in zip(rows.where, keep) if k],
        [(i, why) for i, why in rows.skipped if lo <= i < hi],
    )
