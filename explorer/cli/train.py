"""Train a model and write a checkpoint.

    python -m explorer train --kind vae --backbone conv --dataset fashion-mnist \\
        --latent-dim 16 --epochs 30 --device auto --out checkpoints/fmnist-vae.safetensors

Several GPUs: the same command under ``torchrun --nproc_per_node=N -m explorer train ...``.
``--resume`` continues a killed run from ``OUT.resume``. The model flags come from the
config dataclasses of the registered kinds, so they cannot drift from the models.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from explorer.data import load_dataset
from explorer.errors import ConfigError

if TYPE_CHECKING:
    from explorer.models.base import ModelConfig
    from explorer.train import TrainConfig

# explorer.models and explorer.train import torch: they are imported inside the functions, so that
# `python -m explorer --help`, which imports this module for its docstring, stays fast


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _yes_no(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "yes", "1", "on")


def _parser_type(hint: Any) -> Callable[[str], Any] | None:
    if hint in (int, float, str):
        return hint
    if hint is bool:
        return _yes_no
    if typing.get_origin(hint) is tuple:
        return lambda s: tuple(int(v) for v in s.split(",") if v.strip())
    return None


def _model_fields() -> dict[str, tuple[Callable[[str], Any], list[str]]]:
    """Every config field of every registered kind that a flag can set -> (its parser, kinds that have it)."""
    from explorer import models

    fields: dict[str, tuple[Callable[[str], Any], list[str]]] = {}
    for kind in models.trainable_kinds():
        cls = models.config_class(kind)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            parse = _parser_type(hints[f.name])
            if parse is not None:  # free-form fields (dicts) have no flag
                fields.setdefault(f.name, (parse, []))[1].append(kind)
    return fields


def add_arguments(p: argparse.ArgumentParser) -> None:
    from explorer import models
    from explorer.train import TrainConfig

    p.add_argument("--kind", required=True, choices=models.trainable_kinds(), help="model kind")
    all_kinds = set(models.trainable_kinds())
    group = p.add_argument_group("model (defaults from each kind's config)")
    for name, (parse, kinds) in _model_fields().items():
        if name == "input_shape":
            group.add_argument("--input-shape", default=None, help="C,H,W (default: the dataset's)")
            continue
        only = "" if set(kinds) == all_kinds else f" [{', '.join(kinds)} only]"
        group.add_argument(_flag(name), type=parse, default=None, help=f"{name}{only}")
    trainer = p.add_argument_group("training")
    defaults = TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if hints[f.name] is bool:
            trainer.add_argument(_flag(f.name), action="store_true")
        else:
            kind = str if f.name == "data_root" else hints[f.name]
            trainer.add_argument(_flag(f.name), type=kind, default=getattr(defaults, f.name))


def configs_from_args(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    from explorer import models
    from explorer.train import TrainConfig

    cls = models.config_class(args.kind)
    own = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for name in _model_fields():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in own:
            raise ConfigError(f"{_flag(name)} does not apply to kind {args.kind!r}")
        kwargs[name] = value
    tcfg = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    if "input_shape" in kwargs:
        kwargs["input_shape"] = tuple(int(v) for v in str(kwargs["input_shape"]).split(","))
    else:
        kwargs["input_shape"] = load_dataset(tcfg.dataset, "test", root=tcfg.data_root).shape
    mcfg = cls(**kwargs)
    if not tcfg.out:
        tcfg.out = f"checkpoints/{tcfg.dataset}-{mcfg.kind}-{mcfg.backbone}.safetensors"
    return mcfg, tcfg


def run(args: argparse.Namespace) -> int:
    from explorer.train import train

    mcfg, tcfg = configs_from_args(args)
    train(mcfg, tcfg)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # a torchrun worker whose work is done and written: it leaves without the interpreter's teardown, where
        # gloo's threads now and then abort a finished process (SIGABRT) and torchrun then fails the whole run
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
