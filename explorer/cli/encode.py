"""Encode a whole dataset with a checkpoint into resumable Parquet shards, here or on Ray.

Each shard holds S images of the source in order (id, latent, reconstruction error, the model's
per-image statistics, label, where the image came from) and is written whole or not at all, so a
killed run started again writes only the shards still missing. --data is a built-in dataset
(digits, mnist, fashion-mnist, optionally NAME:SPLIT) or a location one of the source kinds reads.
--engine ray runs one model copy per Ray worker (a GPU each where the cluster has GPUs); Ray starts
locally unless --ray-address joins a cluster.

    python -m explorer encode checkpoints/fashion-mnist-vae-conv16.safetensors --data fashion-mnist --out latents/
    python -m explorer encode model.safetensors --data /data/imagenet --out latents/ --engine ray --ray-address auto
"""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

from explorer.errors import CheckpointError, ExplorerError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="the .safetensors checkpoint to encode with")
    p.add_argument("--data", required=True, metavar="SOURCE", help="a built-in dataset (NAME[:SPLIT]) or a location")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder of shards (made if missing)")
    p.add_argument("--batch-size", type=int, default=256, help="images per model call (default 256)")
    p.add_argument("--shard-size", type=int, default=16384, help="images per shard (default 16384)")
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="this process, or Ray Data workers")
    p.add_argument("--ray-address", default=None, help="a Ray cluster to join (auto, ray://HOST:PORT); default: local")
    p.add_argument("--num-workers", type=int, default=None, help="Ray workers (default: one per GPU, else per CPU)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda where available")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="encode the first N images only")
    p.add_argument("--overwrite", action="store_true", help="replace shards another checkpoint or source made")


class Bar:
    """Images/s while a run goes: tqdm when installed, else a line per shard."""

    def __init__(self, total: int, done: int) -> None:
        self.total, self.done, self.t0, self.last = total, done, time.perf_counter(), 0
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, initial=done, unit="img", unit_scale=True, desc="encoding", mininterval=1)

    def advance(self, n: int) -> None:
        self.done += n
        self.last += n
        if self.bar is not None:
            self.bar.update(n)

    def shard_written(self, k: int, rows) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"shard {k} written", refresh=False)
            return
        rate = self.last / max(time.perf_counter() - self.t0, 1e-9)
        print(f"  shard {k:5d}: {len(rows):,} images, {len(rows.skipped):,} skipped; "
              f"{self.done:,}/{self.total:,} done, {rate:,.0f} images/s", flush=True)  # fmt: skip

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from explorer.checkpoint import load_checkpoint
    from explorer.maps.encode_job import EncodeOptions, encode_local, plan, resolve_device
    from explorer.maps.shards import source_spec
    from explorer.store import sha256

    options = EncodeOptions(args.batch_size, args.shard_size, args.limit, args.device, args.overwrite)
    if args.num_workers is not None and args.num_workers < 1:
        raise ExplorerError(f"--num-workers must be at least 1, got {args.num_workers}")
    if args.engine == "ray":
        from explorer.maps.ray_engine import INSTALL_HINT, ray_available

        if not ray_available():
            raise ExplorerError(INSTALL_HINT)
    path = Path(args.checkpoint)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    spec = source_spec(args.data)
    source = spec.open()
    # the Ray workers hold the model that encodes; here it only says what the shards' columns are
    model = load_checkpoint(raw, device=resolve_device(args.device) if args.engine == "local" else "cpu")
    manifest, todo, kept = plan(model, sha256(raw), spec, source, args.out, options)
    ranges = manifest.ranges()
    done = sum(ranges[k][1] - ranges[k][0] for k in kept)
    print(
        f"{spec.name}: {manifest.count:,} of {manifest.length:,} images in {len(ranges)} shard(s) of "
        f"{manifest.shard_size:,} -> {args.out}; {len(kept)} kept from an earlier run, {len(todo)} to write",
        file=sys.stderr,
    )
    bar = Bar(manifest.count, done)
    try:
        if args.engine == "ray":
            from explorer.maps.ray_engine import encode_ray

            engine = partial(
                encode_ray, raw, num_workers=args.num_workers, address=args.ray_address, device=args.device
            )
        else:
            engine = partial(encode_local, model, source)
        summary = engine(
            manifest, todo, args.out, batch_size=args.batch_size, advance=bar.advance, shard_written=bar.shard_written
        )
    finally:
        bar.close()
    summary.kept = kept
    print(
        f"encoded {summary.encoded:,} images, skipped {summary.skipped:,}; shards written {len(summary.written)}, "
        f"reused {len(kept)}; {summary.seconds:.1f} s, {summary.rate:,.0f} images/s ({args.engine} engine) -> {args.out}"
    )
    return 0
