"""The "Your model" page: drop model files, see what the importer read and worked out, check a few
reconstructions, then use the model. The work is done by explorer.importers; this page only asks and shows."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from explorer import settings
from explorer.data import dataset_names
from explorer.errors import ExplorerError
from explorer.figures import images
from explorer.ui import bring, state

AUTO = "from the file / inferred"
# ImportOptions field -> widget label; labels are what refusals point at. The choices come from the model zoo
# (``_choices``): kinds from the registry, activations from the backbones.
FIELDS: dict[str, str] = {
    "kind": "Kind",
    "activation": "Hidden activation",
    "latent_activation": "Latent activation",
    "output_activation": "Output activation",
    "input_range": "Input pixel range",
}
RANGE_NAMES = {"unit": "[0, 1]", "symmetric": "[-1, 1]"}
SHAPE_LABEL = "Input shape C,H,W"
DATASET_LABEL = "Images to check it on"


def _choices() -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each field's choices after AUTO, and the words shown for a value: every kind a file's layers can become
    (by the registry's title), every activation the backbones build, every output activation and pixel range."""
    from explorer import models
    from explorer.importers.layers import importable_kinds
    from explorer.models.backbones import ACTIVATIONS
    from explorer.models.config import INPUT_RANGES, OUTPUT_ACTIVATIONS

    kinds = importable_kinds()
    choices = {
        "kind": kinds,
        "activation": list(ACTIVATIONS),
        "latent_activation": list(ACTIVATIONS),
        "output_activation": list(OUTPUT_ACTIVATIONS),
        "input_range": list(INPUT_RANGES),
    }
    words = {**{k: f"{models.title(k)} ({k})" for k in kinds}, **RANGE_NAMES}
    return choices, words


def _options() -> tuple[dict, str | None]:
    """The choices as ImportOptions keywords (AUTO -> left out), and a problem with the typed shape."""
    chosen: dict = {}
    cols = st.columns(3)
    choices, words = _choices()
    for i, (field, label) in enumerate(FIELDS.items()):
        value = cols[i % 3].selectbox(
            label,
            [AUTO, *choices[field]],
            key=f"up_{field}",
            format_func=lambda v: words.get(v, v),
        )
        if value != AUTO:
            chosen[field] = value
    shape_text = cols[2].text_input(SHAPE_LABEL, key="up_shape", placeholder=AUTO)
    dataset = st.selectbox(
        DATASET_LABEL,
        [AUTO, *dataset_names()],
        key="up_dataset",
        help="What the file leaves open is tried on these images; the lowest reconstruction error wins.",
    )
    if dataset != AUTO:
        chosen["dataset"] = dataset
    problem = None
    if shape_text.strip():
        parts = shape_text.replace("x", ",").split(",")
        try:
            shape = tuple(int(p) for p in parts)
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError
            chosen["input_shape"] = shape
        except ValueError:
            problem = (
                f"“{shape_text}” is not an input shape. Type three whole numbers C,H,W, e.g. 1,28,28 for grey "
                "28×28 images or 3,64,64 for colour 64×64, or leave the field empty."
            )
    return chosen, problem


def _refusal(exc: ExplorerError) -> str:
    """The message, plus the field that resolves it when the error names an option."""
    labels = {
        **FIELDS,
        "input_shape": SHAPE_LABEL,
        "dataset": DATASET_LABEL,
    }
    where = labels.get(getattr(exc, "option", None) or "")
    return f"Refused: {exc}" + (f" Set “{where}” above and the file is tried again." if where else "")


def _preview(pending: state.PendingImport) -> None:
    st.markdown(f"**{pending.name}** — what was read and decided")
    st.code("\n".join(pending.lines), language=None)
    if pending.preview is None:
        st.warning(pending.preview_note)
        return
    originals, recon, errors = pending.preview
    pairs = np.concatenate([originals, recon])  # row 1: originals, row 2: reconstructions
    scale = images.scale_for(originals.shape[1], 56)
    st.image(images.grid(pairs, cols=len(originals), scale=scale), width="stretch")
    st.caption(
        f"Top: {len(originals)} images of {pending.preview_note}; bottom: this model's reconstructions. "
        f"Per-pixel MSE {errors.mean():.4f} (each: " + ", ".join(f"{e:.4f}" for e in errors) + "). "
        "Blurry is normal; noise, inverted or washed-out pictures mean a choice above is wrong."
    )


def upload_view(*, home: Any = None) -> None:
    """``home``: the page to open once a model is in use (a ``st.Page``)."""
    st.header("Your model")
    if not settings.current().allow_uploads:
        st.info("Uploading models is switched off on this server.")
        return
    st.markdown(
        "Drop **one** model file (this explorer's `.safetensors`, a PyTorch `state_dict`, a Keras `.keras`) "
        "or **two**: an encoder and a decoder (ONNX from any framework, or PyTorch). Files are checked in a "
        "separate process with limits and never unpickled; they stay in your browser session."
    )
    with st.expander("How to bring a model", expanded=False):
        torch_tab, keras_tab, formats_tab = st.tabs(["PyTorch → ONNX", "Keras", "What each format carries"])
        torch_tab.markdown(bring.PYTORCH)
        keras_tab.markdown(bring.KERAS)
        formats_tab.markdown(bring.FORMATS)
    files = st.file_uploader(
        "Model file(s)",
        type=None,
        accept_multiple_files=True,
        key="up_model",
        max_upload_size=settings.upload_cap_mb(settings.current(), st.get_option("server.maxUploadSize")),
        help=settings.UPLOAD_TROUBLE_HELP,
    )
    if not files:
        st.session_state.pop("up_pending", None)
        return
    chosen, problem = _options()
    if problem:
        st.error(problem)
        return
    # the uploader's file ids name these exact uploads: no need to hash megabytes on every rerun
    token = repr(([f.file_id for f in files], sorted(chosen.items())))
    pending: state.PendingImport | None = st.session_state.get("up_pending")
    if pending is None or pending.token != token:
        st.session_state.pop("up_pending", None)
        blobs = [(f.name, f.getvalue()) for f in files]
        try:
            with st.spinner("Checking the file(s) and working out what they leave open…"):
                pending = state.prepare_import(blobs, chosen, token)
        except ExplorerError as exc:
            st.error(_refusal(exc))
            return
        st.session_state["up_pending"] = pending
    _preview(pending)
    if st.button("Use this model", type="primary", key="up_commit"):
        ref = state.commit_import(pending)
        st.session_state.pop("up_pending", None)
        st.session_state["ckpt"] = ref.name
        st.session_state["up_msg"] = ("ok", f"Loaded {ref.name}: {ref.kind}, latent {ref.latent_dim}")
        if home is not None:
            st.switch_page(home)
        st.rerun()
