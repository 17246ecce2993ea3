"""The training loop: one autoencoder in, one checkpoint out (``python -m explorer train``).

CUDA runs under bf16 autocast (``compile`` adds torch.compile); several GPUs run the
same command under ``torchrun --nproc_per_node=N -m explorer train ...`` with
DistributedDataParallel, each rank taking an equal share of every epoch; otherwise the
CPU. Every epoch writes ``OUT.resume`` (weights and Adam state, safetensors, atomically);
``resume`` continues from it after a kill. Each epoch's shuffle and noise come from
(seed, epoch), so a resumed run ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.distributed as dist
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from explorer import models
from explorer.checkpoint import atomic_write, save_checkpoint
from explorer.data import load_dataset, to_float
from explorer.errors import CheckpointError, ConfigError, ExplorerError
from explorer.models.base import Autoencoder, ModelConfig
from explorer.quality.metrics import QualityOptions, QualityReport, model_quality, split_images
from explorer.untrusted import safetensors_header

if TYPE_CHECKING:
    from torch.utils.data import Dataset

RESUME_FORMAT = "latent-explorer-resume"


@dataclass
class TrainConfig:
    dataset: str = "fashion-mnist"
    data_root: str | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    compile: bool = False
    limit: int = 0  # train on the first N images only (0 = all); for quick runs and tests
    out: str = ""
    resume: bool = False


# --- devices and distribution -----------------------------------------------------------------


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ExplorerError(f"--device {name} asked for CUDA but torch sees no GPU; use --device cpu or auto")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    """The device as it really was, for the checkpoint metadata (e.g. 'cuda: NVIDIA H200')."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return device.type


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group when run under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, 0
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def _broadcast_weights(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            dist.broadcast(p.data, src=0)


def _any_rank(flags: torch.Tensor) -> torch.Tensor:
    """Element-wise OR of a bool tensor over all ranks."""
    as_int = flags.to(torch.int32)
    dist.all_reduce(as_int, op=dist.ReduceOp.MAX)
    return as_int.bool()


# --- resume state: weights + Adam moments in one safetensors file, no pickle -------------------


def _resume_path(out: Path) -> Path:
    return out.with_name(out.name + ".resume")


def save_resume(
    path: Path,
    model: Autoencoder,
    opt: torch.optim.Optimizer,
    state: dict[str, Any],
    counters: dict[str, torch.Tensor],
) -> None:
    """``counters``: the trainer's own tensors (e.g. since-fired), restored by ``load_resume``."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"trainer.{k}": v.detach().cpu().contiguous() for k, v in counters.items()})
    opt_state = opt.state_dict()
    for idx, entry in opt_state["state"].items():
        for name, value in entry.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    doc = {"config": model.config.to_dict(), "param_groups": opt_state["param_groups"], **state}
    atomic_write(path, st_save(tensors, metadata={"format": RESUME_FORMAT, "explorer": json.dumps(doc)}))


def load_resume(
    path: Path, model: Autoencoder, opt: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restores model and optimiser in place; returns the saved state and the trainer's counters."""
    buf = path.read_bytes()
    header, _ = safetensors_header(buf, label=path.name)
    meta = header.get("__metadata__", {})
    if meta.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path} is not a resume file of this trainer")
    doc = json.loads(meta["explorer"])
    if doc["config"] != model.config.to_dict():
        raise CheckpointError(
            f"{path} was written for a different model config; delete it or train with the same options\n"
            f"  file: {doc['config']}\n  now:  {model.config.to_dict()}"
        )
    tensors = st_load(buf)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": doc["param_groups"]})
    return doc, {k[8:]: v for k, v in tensors.items() if k.startswith("trainer.")}


# --- the loop ---------------------------------------------------------------------------------


def lr_at(step: int, total: int, base: float) -> float:
    """Cosine decay from base to 5% of base; a pure function of the step, so resume needs no scheduler state."""
    t = min(step / max(total, 1), 1.0)
    return base * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t)))


def epoch_indices(n: int, epoch: int, seed: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """This rank's shuffled sample indices for one epoch, a function of (seed, epoch) so a resumed run repeats them.

    DistributedSampler pads the permutation to a multiple of the world size, so every rank
    gets ceil(n / world) indices and the same number of non-empty batches: DDP's gradient
    all-reduce needs every rank to take every step. With one process it is a plain permutation.
    """
    indices = cast("Dataset[int]", range(n))  # the sampler reads only len()
    sampler: DistributedSampler[int] = DistributedSampler(
        indices, num_replicas=world, rank=rank, shuffle=True, seed=seed * 100_003
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def checkpoint_metrics(report: QualityReport) -> dict[str, float]:
    """A report's figures as a checkpoint's metadata keeps them: reconstruction MSE and BCE as ``mse`` and
    ``bce``, the others under the report's names, and the PCA's component count; figures it lacks are left out."""
    short = {"recon_mse": "mse", "recon_bce": "bce"}
    out = {short.get(k, k): float(v) for k, v in report.figures.items() if v is not None}
    out["pca_components"] = report.pca_components
    return out


def train(model_cfg: ModelConfig, cfg: TrainConfig) -> Path:
    """Train and write the checkpoint; returns its path. Runs on every rank under torchrun."""
    rank, world, local_rank = _distributed()
    device = resolve_device(cfg.device, local_rank)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)

    train_ds = load_dataset(cfg.dataset, "train", root=cfg.data_root)
    test_ds = load_dataset(cfg.dataset, "test", root=cfg.data_root)
    if tuple(train_ds.shape) != tuple(model_cfg.input_shape):
        raise ConfigError(f"dataset {cfg.dataset} has images {train_ds.shape}, model expects {model_cfg.input_shape}")
    n_train = len(train_ds) if cfg.limit <= 0 else min(cfg.limit, len(train_ds))
    x_train = torch.from_numpy(to_float(train_ds.images[:n_train]))  # (N, C, H, W) float32

    model = models.build(model_cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    # trainer state beside the weights: for sparse codes, steps since each unit was last active (F,),
    # which the model reads to find dead units; saved in the resume file like the weights
    counters: dict[str, torch.Tensor] = {}
    if model.sparse_codes:
        counters["since_fired"] = torch.zeros(model.latent_dim, dtype=torch.long)
    start_epoch, wall_before = 0, 0.0
    resume_file = _resume_path(out)
    if cfg.resume and resume_file.exists():
        doc, saved = load_resume(resume_file, model, opt)
        counters.update(saved)
        start_epoch, wall_before = int(doc["epoch"]), float(doc["wall_time_s"])
        if rank == 0:
            print(f"resuming from {resume_file} after epoch {start_epoch}")
    elif cfg.resume and rank == 0:
        print(f"--resume: no {resume_file}; starting from scratch")
    if start_epoch == 0:
        model.init_from_data(x_train[:10_000].to(device))  # the same images on every rank: the same start

    counters = {k: v.to(device) for k, v in counters.items()}
    since_fired = counters.get("since_fired")  # the same tensor: updated in place, saved with counters

    net: torch.nn.Module = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        net = cast(torch.nn.Module, torch.compile(net))  # a compiled module is still a module
    use_bf16 = device.type == "cuda"

    steps_per_epoch = math.ceil(math.ceil(n_train / world) / cfg.batch_size)  # the same on every rank
    total_steps = steps_per_epoch * cfg.epochs
    t0 = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        # shuffle and noise depend only on (seed, epoch, rank): a resumed run repeats them exactly
        perm = epoch_indices(n_train, epoch, cfg.seed, rank, world)  # (ceil(N / world),)
        torch.manual_seed(cfg.seed * 7_919 + epoch * 104_729 + rank)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=rank != 0, mininterval=2)
        running: dict[str, float] = {}
        for i in bar:
            idx = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            xb = x_train[idx].to(device, non_blocking=True)  # (B, C, H, W)
            step = epoch * steps_per_epoch + i
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total_steps, cfg.lr)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                terms = net(xb, since_fired)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            fired = terms.pop("fired", None)  # (F,) bool: units active on this batch
            if since_fired is not None and fired is not None:
                if world > 1:  # a unit is alive if it fired on any rank: every rank keeps the same counters
                    fired = _any_rank(fired)
                since_fired += 1
                since_fired[fired] = 0
            reset = model.after_step(step=step + 1, x=xb, since_fired=since_fired)
            if reset is not None and since_fired is not None:
                since_fired[reset] = 0  # re-initialised units get a fresh grace period before counting as dead
                if world > 1:  # each rank drew from its own batch: rank 0's draw wins, or the replicas drift apart
                    _broadcast_weights(model)
            for k, v in terms.items():
                value = float(v.detach())
                running[k] = 0.98 * running.get(k, value) + 0.02 * value
            if i % 20 == 0:
                bar.set_postfix({k: f"{v:.4g}" for k, v in running.items()})
        if rank == 0:
            wall = wall_before + time.perf_counter() - t0
            save_resume(resume_file, model, opt, {"epoch": epoch + 1, "wall_time_s": wall}, counters)

    if world > 1:
        dist.barrier()
        # every rank leaves the group now: a rank that exits with the group still open can abort in gloo's
        # teardown (SIGABRT), and torchrun then kills rank 0 while it evaluates and saves
        dist.destroy_process_group()
    if rank != 0:
        return out

    wall = wall_before + time.perf_counter() - t0
    # the report of ``python -m explorer metrics`` on the test split: the same figures, kNN, probe and PCA
    evaluated, reference, pca_train = split_images(
        cfg.dataset, "test", model.input_shape, QualityOptions(), root=cfg.data_root
    )
    metrics = checkpoint_metrics(model_quality(model, evaluated, reference, pca_train))
    save_checkpoint(
        model,
        out,
        dataset={
            "name": cfg.dataset,
            "split_trained": "train",
            "split_evaluated": "test",
            "train_images": n_train,
            "test_images": len(test_ds),
            "preprocessing": "uint8 / 255 -> float32 in [0, 1], (C, H, W)",
            "class_names": list(train_ds.class_names),
        },
        training={
            "device": device_label(device),
            "world_size": world,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "bf16": use_bf16,
            "compiled": cfg.compile,
            "wall_time_s": round(wall, 2),
            "torch": torch.__version__,
        },
        metrics={k: round(v, 6) for k, v in metrics.items()},
    )
    resume_file.unlink(missing_ok=True)
    print(f"wrote {out}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return out
