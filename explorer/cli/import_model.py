"""Convert a PyTorch state_dict or a Keras .keras file into a checkpoint.

    python -m explorer import autoencoder.pt --out checkpoints/mine.safetensors --latent-activation relu
    python -m explorer import encoder.pt decoder.pt --out mine.safetensors --input-shape 1,28,28

Accepted: a torch.save state_dict (one file, or two: encoder and decoder), a bare safetensors state_dict,
a Keras 3 .keras file of Dense layers, or a latent-explorer checkpoint (rewritten with --dataset). Nothing
is unpickled: torch files are read with weights_only=True in a limited child process. The lines printed say
what was inferred (widths, activations, and which of them were assumed).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _shape_arg(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W (three positive integers, e.g. 1,28,28), got {text!r}")
    return shape


def add_arguments(p: argparse.ArgumentParser) -> None:
    from explorer.importers.layers import importable_kinds

    p.add_argument("files", nargs="+", metavar="FILE", help="model file; or two: encoder and decoder state_dicts")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument(
        "--input-shape",
        type=_shape_arg,
        default=None,
        metavar="C,H,W",
        help="C,H,W (needed unless 784/1024/3072 inputs)",
    )
    p.add_argument("--kind", default="ae", choices=importable_kinds(), help="model kind (default: ae)")
    p.add_argument(
        "--activation", default=None, metavar="NAME", help="hidden activation of a state_dict (default: relu)"
    )
    p.add_argument(
        "--latent-activation", default=None, metavar="NAME", help="encoder output activation (default: identity)"
    )
    p.add_argument(
        "--dataset", default=None, metavar="NAME", help="dataset the model was trained on, recorded in the checkpoint"
    )


def run(args: argparse.Namespace) -> int:
    """Import ``args.files`` and write ``args.out``; a CheckpointError propagates to the dispatcher."""
    from explorer.checkpoint import save_checkpoint
    from explorer.importers import LABELS, describe, import_files
    from explorer.untrusted import read_bounded

    files = [(Path(raw).name, read_bounded(raw, what="model file")) for raw in args.files]
    model, fmt = import_files(
        files,
        input_shape=args.input_shape,
        kind=args.kind,
        activation=args.activation,
        latent_activation=args.latent_activation,
    )
    if fmt == "explorer":  # already ours: keep what it records about its data, training and metrics
        dataset = {"name": args.dataset} if args.dataset else model.info.get("dataset", {})
        save_checkpoint(model, args.out, dataset=dataset)
    else:
        names = ", ".join(name for name, _ in files)
        dataset = {"name": args.dataset} if args.dataset else {}
        training = {"device": "imported", "source": f"{LABELS[fmt]}: {names}"}
        save_checkpoint(model, args.out, dataset=dataset, training=training, metrics={})
    for line in describe(model):
        print(line)
    print(f"wrote {args.out}")
    return 0
