"""Convert a model from elsewhere (ONNX, PyTorch, Keras) into a checkpoint.

    python -m explorer import encoder.onnx decoder.onnx --out checkpoints/mine.safetensors
    python -m explorer import autoencoder.pt --out checkpoints/mine.safetensors
    python -m explorer import encoder.pt decoder.pt --out mine.safetensors --input-shape 1,28,28 --dataset digits

Accepted: an encoder and a decoder exported to ONNX, a torch.save state_dict (one file, or two: encoder and
decoder), a bare safetensors state_dict, a Keras 3 .keras file, or a latent-explorer checkpoint (rewritten
with --dataset). Nothing is unpickled: torch files are read with weights_only=True in a limited child process.

What a file does not record (a state_dict's activations, the input pixel range, AE or VAE) is worked out: each
open choice is tried on sample images (--dataset, else a built-in dataset that fits the input) and the one that
reconstructs them best is kept. The lines printed say what was decided, how, and by what margin; every flag
below overrides the file and the inference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from explorer.checkpoint import save_checkpoint
from explorer.data import dataset_names
from explorer.errors import CheckpointError
from explorer.untrusted import read_bounded

# the value each flag takes, shown after the flag in messages
METAVARS = {"input_shape": "C,H,W", "dataset": "NAME", "kind": "KIND"}


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
    from explorer.models.backbones import ACTIVATIONS
    from explorer.models.config import INPUT_RANGES, OUTPUT_ACTIVATIONS

    inferred = "default: from the file, else inferred from sample images"
    p.add_argument("files", nargs="+", metavar="FILE", help="model file; or two: encoder and decoder")
    p.add_argument("--out", required=True, help="checkpoint to write (.safetensors)")
    p.add_argument(
        "--input-shape",
        type=_shape_arg,
        default=None,
        metavar="C,H,W",
        help="input image shape (default: from the file, or 784/1024/3072/... values as 1,28,28/1,32,32/3,32,32/...)",
    )
    p.add_argument("--kind", default=None, choices=importable_kinds(), help="model kind (default: from the shapes)")
    p.add_argument("--activation", default=None, choices=list(ACTIVATIONS), help=f"hidden activation ({inferred})")
    p.add_argument(
        "--latent-activation", default=None, choices=list(ACTIVATIONS), help=f"after the encoder ({inferred})"
    )
    p.add_argument(
        "--output-activation", default=None, choices=list(OUTPUT_ACTIVATIONS), help=f"after the decoder ({inferred})"
    )
    p.add_argument(
        "--input-range",
        default=None,
        choices=list(INPUT_RANGES),
        help=f"pixel scale the model was trained on: unit [0, 1] or symmetric [-1, 1] ({inferred})",
    )
    p.add_argument(
        "--dataset",
        default=None,
        metavar="NAME",
        help=f"dataset the model was trained on, recorded in the checkpoint; when built-in ({', '.join(dataset_names())}) "
        "its images are the ones open choices are tried on",
    )


def _with_flag(exc: Exception) -> Exception:
    """``exc`` with the flag that sets its option appended, when it names one."""
    from explorer.importers import OptionError

    if not isinstance(exc, OptionError):
        return exc
    flag = "--" + exc.option.replace("_", "-")
    value = f" {METAVARS[exc.option]}" if exc.option in METAVARS else ""
    return OptionError(f"{str(exc).rstrip('.')} ({flag}{value}).", option=exc.option)


def run(args: argparse.Namespace) -> int:
    """Import ``args.files`` and write ``args.out``; a CheckpointError propagates to the dispatcher."""
    from explorer.importers import ImportOptions, describe, import_files, labels

    files = [(Path(raw).name, read_bounded(raw, what="model file")) for raw in args.files]
    builtin = args.dataset in dataset_names()
    options = ImportOptions(
        kind=args.kind,
        input_shape=args.input_shape,
        activation=args.activation,
        latent_activation=args.latent_activation,
        output_activation=args.output_activation,
        input_range=args.input_range,
        dataset=args.dataset if builtin else None,
    )
    try:
        model, report = import_files(files, options)
    except CheckpointError as exc:
        raise _with_flag(exc) from None
    dataset = {"name": args.dataset} if args.dataset else {}
    if report.source == labels()["explorer"]:  # already ours: keep what it records about its data, training and metrics
        save_checkpoint(model, args.out, dataset=dataset or model.info.get("dataset", {}))
    else:
        training = {"device": "imported", "source": f"{report.source}: {', '.join(report.files)}"}
        save_checkpoint(model, args.out, dataset=dataset, training=training, metrics={})
    for line in describe(model):
        print(line)
    if args.dataset and not builtin:
        print(f"note: {args.dataset} is not a built-in dataset; it is recorded as the model's dataset only")
    print(f"wrote {args.out}")
    return 0
