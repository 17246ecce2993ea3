"""Work out from data what a model file leaves open: hidden, latent and output activations, input pixel range.

A PyTorch state_dict records weights, not the functions between them, nor whether the model saw pixels in
[0, 1] or [-1, 1]. Every combination of the plausible candidates for the open choices is tried on sample
images and the one that reconstructs them best (lowest MSE of [0, 1] pixels) is kept; each choice reports its
runner-up: the best combination with a different value for that choice.

Cost: candidates share the model's weights (modules are built on the meta device and the tensors assigned),
and the output activation and input range are read at call time, so a full search is one encoder + decoder
pass per (hidden, latent, input range) triple: 56 passes, about 0.1 s for a 784-128-64-32 MLP on 256 images.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import torch

from explorer import models
from explorer.data import dataset_names, fit_to_shape, load_dataset, to_float
from explorer.errors import DatasetError
from explorer.importers.options import Decision, OptionError, SampleImages, option_label

if TYPE_CHECKING:
    from explorer.models.base import Autoencoder

# The first candidate of each is the explorer's own convention: kept on an exact tie, assumed without data.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "activation": ("relu", "leaky_relu", "elu", "gelu", "silu", "tanh", "sigmoid"),
    "latent_activation": ("identity", "relu", "tanh", "sigmoid"),
    "output_activation": ("sigmoid", "tanh", "identity"),
    "input_range": ("unit", "symmetric"),
}
CHOICES = tuple(CANDIDATES)
CONVENTION = {name: values[0] for name, values in CANDIDATES.items()}
# read by Autoencoder.to_body / to_pixels at call time, so trying them needs no rebuild
_AT_CALL = ("input_range", "output_activation")
SAMPLE_SIZE = 256
SAMPLE_SEED = 0
CLOSE_CALL = 1.05  # runner-up error / kept error below this: the sample barely tells them apart


# --- sample images ----------------------------------------------------------------------------------------


def default_datasets(input_shape: tuple[int, int, int]) -> tuple[str, ...]:
    """Built-in datasets whose images suit a model input, best guess first."""
    c, h, w = input_shape
    if (h, w) == (8, 8):
        return ("digits",)
    if (c, h, w) == (1, 28, 28):
        return ("mnist", "fashion-mnist")
    return ("fashion-mnist", "digits")


def sample_dataset(
    dataset: str | None, input_shape: tuple[int, int, int], *, n: int = SAMPLE_SIZE
) -> tuple[str, np.ndarray]:
    """(dataset title, images): ``n`` seeded test images fitted to ``input_shape``, float32 (n, C, H, W) in [0, 1].

    ``dataset`` None picks one by input shape (``default_datasets``). Raises DatasetError when none is available.
    The array is cached and read-only.
    """
    return _sample(dataset, (int(input_shape[0]), int(input_shape[1]), int(input_shape[2])), n)


def sample_sets(
    dataset: str | None, input_shape: tuple[int, int, int], *, n: int = SAMPLE_SIZE
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The image sets a model file's open choices are tried on: ``[(dataset name, images)]`` and why a dataset
    gave none. ``dataset`` named: that one alone (its DatasetError raised). Else every built-in dataset, the
    likeliest for this input shape first: a model reconstructs the data it was trained on best, so the set
    with the lowest error tells which that was (``choose_dataset``)."""
    if dataset:
        return [(dataset, sample_dataset(dataset, input_shape, n=n)[1])], []
    order = list(default_datasets(input_shape)) + [d for d in dataset_names() if d not in default_datasets(input_shape)]
    sets, reasons = [], []
    for name in order:
        try:
            sets.append((name, sample_dataset(name, input_shape, n=n)[1]))
        except DatasetError as exc:
            reasons.append(f"{name}: {str(exc).rstrip('.')}")
    return sets, reasons


def choose_dataset(errors: dict[str, float], named: str | None = None) -> Decision | None:
    """The dataset decision from each tried set's best reconstruction error ({name: MSE}, in trial order)."""
    if named:
        return Decision("dataset", named, "user")
    if not errors:
        return None
    best = min(errors, key=errors.__getitem__)
    rivals = {k: e for k, e in errors.items() if k != best}
    if not rivals:
        return Decision("dataset", best, "inferred", None, errors[best], None)
    runner = min(rivals, key=rivals.__getitem__)
    return Decision("dataset", best, "inferred", runner, errors[best], rivals[runner])


def reconstruction_mse(model: Autoencoder, images: np.ndarray) -> float:
    """Mean per-pixel squared error of the model's reconstructions of images (N, C, H, W) in [0, 1]."""
    x = torch.tensor(images, dtype=model.dtype, device=model.device)
    with torch.inference_mode():
        error = float((model.reconstruct(x) - x).double().pow(2).mean())
    return error if math.isfinite(error) else math.inf


def sample_images(dataset: str | None, input_shape: tuple[int, int, int], *, n: int = SAMPLE_SIZE) -> np.ndarray:
    """``sample_dataset`` without the title: float32 (n, C, H, W) in [0, 1], a copy the caller may write to."""
    return sample_dataset(dataset, input_shape, n=n)[1].copy()


@functools.lru_cache(maxsize=8)
def _sample(dataset: str | None, shape: tuple[int, int, int], n: int) -> tuple[str, np.ndarray]:
    reasons = []
    for name in [dataset] if dataset else default_datasets(shape):
        try:
            # subset first: 256 images are resized, not the whole split
            ds = fit_to_shape(load_dataset(name, "test").subset(n, seed=SAMPLE_SEED), shape)
        except DatasetError as exc:
            if dataset:
                raise
            reasons.append(f"{name}: {str(exc).rstrip('.')}")
            continue
        images = to_float(ds.images)
        images.setflags(write=False)
        return ds.name, images
    raise DatasetError(
        f"no built-in dataset gives sample images of {'x'.join(map(str, shape))} ({'; '.join(reasons)})."
    )


# --- trying candidates ------------------------------------------------------------------------------------


def with_choices(model: Autoencoder, values: Mapping[str, str]) -> Autoencoder:
    """A model like ``model`` with some config fields changed (e.g. ``activation``), sharing its weights."""
    config = dataclasses.replace(model.config, **values, notes=dict(model.config.notes))  # type: ignore[arg-type]
    with torch.device("meta"):  # no initialisation: the weights are model's
        out = models.build(config)
    state = model.state_dict()
    out.load_state_dict(state, assign=True)
    if any(t.is_meta for t in itertools.chain(out.parameters(), out.buffers())):  # a buffer outside the state
        out = models.build(config)
        out.load_state_dict(state)
    out.info = model.info
    return out.train(model.training)


def infer_choices(
    model: Autoencoder, images: np.ndarray, open_choices: Iterable[str]
) -> tuple[dict[str, str], list[Decision]]:
    """The candidates for ``open_choices`` (names from ``CHOICES``) that reconstruct ``images`` best.

    ``images``: float32 (N, C, H, W) in [0, 1]. Choices not open keep the model's config values. Returns the
    chosen value of each open choice and one Decision each, with its runner-up and both errors.
    """
    wanted = set(open_choices)
    names = [c for c in CHOICES if c in wanted]
    if not names:
        return {}, []
    rebuilt = [c for c in names if c not in _AT_CALL]
    at_call = {c: CANDIDATES[c] if c in wanted else (getattr(model.config, c),) for c in _AT_CALL}
    x = torch.tensor(images, dtype=model.dtype, device=model.device)  # (N, C, H, W), a copy
    errors: dict[tuple[str, ...], float] = {}  # in trial order: conventions first, so ties keep them
    with torch.inference_mode():
        for values in itertools.product(*(CANDIDATES[c] for c in rebuilt)):
            candidate = with_choices(model, dict(zip(rebuilt, values))).eval()
            for input_range in at_call["input_range"]:
                candidate.config.input_range = input_range  # the candidate's own config copy
                logits = candidate.decode_logits(candidate.encode(x))
                for output in at_call["output_activation"]:
                    candidate.config.output_activation = output
                    error = float((candidate.to_pixels(logits) - x).double().pow(2).mean())
                    combo = dict(zip(rebuilt, values), input_range=input_range, output_activation=output)
                    errors[tuple(combo[c] for c in names)] = error if math.isfinite(error) else math.inf
    best = min(errors, key=errors.__getitem__)
    decisions = []
    for i, name in enumerate(names):
        runner = min((k for k in errors if k[i] != best[i]), key=errors.__getitem__)
        decisions.append(Decision(name, best[i], "inferred", runner[i], errors[best], errors[runner]))
    return dict(zip(names, best)), decisions


def settle_choices(
    model: Autoencoder,
    open_choices: Iterable[str],
    *,
    sample: SampleImages | None = None,
    dataset: str | None = None,
) -> tuple[Autoencoder, list[Decision], list[str]]:
    """``model`` with its open choices settled on sample images; one Decision per open choice, one for the
    dataset (unless ``sample`` gives the images), and remarks.

    Images come from ``sample`` when given, else from ``dataset``, else from every built-in dataset: the
    choices are tried on each, and the dataset whose best combination reconstructs best is kept with them
    (a model file rarely says what it was trained on; its errors do). When no images fit and the user named
    no dataset, each open choice keeps the explorer's convention and says so ("assumed").
    """
    names = [c for c in CHOICES if c in set(open_choices)]
    sets: list[tuple[str, np.ndarray]]
    reasons: list[str]
    try:
        if sample is not None:
            images = np.asarray(sample(model.input_shape), dtype=np.float32)
            sets, reasons, where = [("", images)], [], f"{len(images)} sample images"
        else:
            sets, reasons = sample_sets(dataset, model.input_shape)
            where = f"{SAMPLE_SIZE} test images of " + (
                sets[0][0] if len(sets) == 1 else f"each of {len(sets)} datasets"
            )
        if not sets:
            raise DatasetError("; ".join(reasons) or "no built-in dataset")
        for _, images in sets:
            if images.ndim != 4 or images.shape[1:] != tuple(model.input_shape) or not len(images):
                raise DatasetError(
                    f"the sample images are {'x'.join(map(str, images.shape))} but the model takes "
                    f"{'x'.join(map(str, model.input_shape))} images."
                )
    except DatasetError as exc:
        if dataset is not None:
            message = f"{str(exc).rstrip('.')}; choose another dataset to try the model on."
            raise OptionError(message, option="dataset") from None
        if not names:
            return model, [], []
        values = {c: str(getattr(model.config, c)) for c in names}
        assumed = ", ".join(f"{option_label(c)} {v}" for c, v in values.items())
        remark = (
            f"nothing to try the choices the file leaves open on ({str(exc).rstrip('.')}); assumed {assumed}: "
            "compare a few reconstructions, or set these choices yourself"
        )
        return model, [Decision(c, v, "assumed") for c, v in values.items()], [remark]
    trials: dict[str, tuple[float, dict[str, str], list[Decision]]] = {}
    for set_name, images in sets:
        if names:
            chosen, decisions = infer_choices(model, images, names)
            trials[set_name] = (float(decisions[0].error or math.inf), chosen, decisions)
        else:
            trials[set_name] = (reconstruction_mse(model, images), {}, [])
    errors = {k: v[0] for k, v in trials.items()}
    best = min(errors, key=errors.__getitem__)
    _, chosen, decisions = trials[best]
    remarks = []
    if names:
        tried = math.prod(len(CANDIDATES[c]) for c in names)
        remarks.append(f"tried {tried} combinations of the choices the file leaves open on {where}")
    if sample is None and (picked := choose_dataset(errors, dataset)) is not None:
        decisions = [*decisions, picked]
    for d in decisions:
        if d.name == "dataset":
            continue
        if d.error is not None and d.runner_up_error is not None and d.runner_up_error < CLOSE_CALL * d.error:
            remarks.append(
                f"the sample barely tells {d.value} from {d.runner_up} for the {option_label(d.name)}; "
                "compare a few reconstructions, or set it yourself"
            )
    return (with_choices(model, chosen) if chosen else model), decisions, remarks


def reconstruction_preview(model: Autoencoder, images: np.ndarray, *, n: int = 8) -> tuple[np.ndarray, ...]:
    """(originals, reconstructions, errors): the first ``n`` of ``images`` (N, C, H, W) floats in [0, 1], the
    model's reconstructions of them, same shape, and each one's MSE, (n,)."""
    x = torch.tensor(np.asarray(images[:n], dtype=np.float32), dtype=model.dtype, device=model.device)
    with torch.inference_mode():
        recon = model.reconstruct(x).float().cpu()
    originals = x.float().cpu()
    errors = (recon - originals).pow(2).flatten(1).mean(1)
    return originals.numpy(), recon.numpy(), errors.numpy()
