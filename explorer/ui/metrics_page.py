"""The Metrics page: a checkpoint's quality figures beside PCA's, and PCA's error curve with the model on it.

The figures come from ``explorer.quality.metrics`` (the same report as ``python -m explorer metrics``),
computed in a child process (``explorer.quality.apart``) once per checkpoint digest, images and options: kept on disk, where the command's
results are found too, and in ``st.cache_data`` for this server. Session keys start ``met_``,
except the checkpoint (``ckpt``), which this page shares with the map pages.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from explorer.data import dataset_names
from explorer.errors import ExplorerError
from explorer.figures.map import PALETTE
from explorer.quality.apart import report_apart
from explorer.quality.metrics import QualityOptions, QualityReport
from explorer.ui import sidebar, state

LIMITS = [1000, 2000, 5000, 10000, 0]  # images evaluated; 0 = the whole split
NO_OOD = "none"


@st.cache_data(max_entries=32, ttl=state.TTL_S, show_spinner=False)  # a report is a few KB: 32 bound the bytes
def _report(digest: str, dataset: str, split: str, limit: int, ood: str | None, _ckpt: state.CheckpointRef) -> dict:
    """The report as a dict (cache_data copies it per caller); the disk cache is looked at first."""
    bar = st.progress(0.0, text=f"Metrics of {_ckpt.name} on {dataset} ({split})…")

    def progress(fraction: float, message: str) -> None:
        bar.progress(min(max(fraction, 0.0), 1.0), text=f"Metrics of {_ckpt.name}: {message}")

    # in a child process: what a report loads (scikit-learn, the training split) leaves with it
    report, _ = report_apart(
        _ckpt.data if _ckpt.data is not None else str(_ckpt.path),
        digest,
        _ckpt.input_shape,
        dataset,
        split=split,
        options=QualityOptions(limit=limit, ood=ood),
        cache_dir=state.disk_cache().root,
        progress=progress,
    )
    bar.empty()
    return report.to_dict()


def report_for(
    ckpt: state.CheckpointRef, dataset: str, split: str = "test", *, limit: int = 0, ood: str | None = None
) -> QualityReport:
    return QualityReport.from_dict(_report(ckpt.digest, dataset, split, int(limit), ood, ckpt))


def cell(value: float | int | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return f"{value:.4g}"


def curve_figure(curves: list[tuple[str, list[tuple[int, float]]]], points: list[tuple[str, int, float]]) -> dict:
    """PCA's reconstruction error against its number of components (log x), and models as stars on it.

    ``curves``: (name, [(components, mse), ...]); ``points``: (name, numbers kept per image, mse)."""
    traces: list[dict] = []
    for name, curve in curves:
        traces.append({
            "type": "scatter", "mode": "lines+markers", "name": name,
            "x": [n for n, _ in curve], "y": [m for _, m in curve],
            "line": {"color": "#888"}, "marker": {"size": 6, "color": "#888"},
            "hovertemplate": f"{name}, %{{x}} components: MSE %{{y:.4g}}<extra></extra>",
        })  # fmt: skip
    for colour, (name, n, mse) in zip(PALETTE[3:] + PALETTE[:3], points):
        traces.append({
            "type": "scatter", "mode": "markers", "name": name, "x": [n], "y": [mse],
            "marker": {"size": 16, "symbol": "star", "color": colour, "line": {"width": 1, "color": "white"}},
            "hovertemplate": f"{name}: %{{x}} numbers per image, MSE %{{y:.4g}}<extra></extra>",
        })  # fmt: skip
    ticks = sorted({n for _, curve in curves for n, _ in curve} | {n for _, n, _ in points})
    layout = {
        "height": 380,
        "margin": {"l": 60, "r": 10, "t": 10, "b": 50},
        "plot_bgcolor": "white",
        "xaxis": {
            "type": "log",
            "title": {"text": "numbers kept per image (PCA components)"},
            "gridcolor": "#eee",
            "tickvals": ticks,
            "ticktext": [str(n) for n in ticks],
        },  # fmt: skip
        "yaxis": {"title": {"text": "reconstruction MSE per pixel"}, "gridcolor": "#eee", "rangemode": "tozero"},
        "legend": {"orientation": "h", "x": 0.0, "y": 1.02, "yanchor": "bottom"},
        "hovermode": "closest",
    }
    return {"data": traces, "layout": layout}


# --- the page ----------------------------------------------------------------------------------------


def _choices() -> tuple[state.CheckpointRef, str, str, int, str | None] | None:
    sb = st.sidebar
    sb.header("Metrics")
    picked = sidebar.checkpoint_picker(sb)
    if picked is None:
        return None
    ckpt = picked[0]
    sidebar.stage_checkpoint(ckpt)
    datasets = dataset_names()
    if st.session_state.get("met_ds_for") != ckpt.name or st.session_state.get("met_ds") not in datasets:
        st.session_state["met_ds_for"] = ckpt.name  # another checkpoint starts on the data it was trained on
        st.session_state["met_ds"] = state.home_dataset(ckpt)
    dataset = sb.selectbox("Dataset", datasets, key="met_ds", help="Built-in datasets: they have a train split")
    split = sb.radio("Split", ["test", "train"], horizontal=True, key="met_split")
    limit = sb.select_slider(
        "Images", LIMITS, value=0, format_func=lambda v: "all" if v == 0 else f"{v:,}", key="met_limit"
    )
    others = [NO_OOD, *(d for d in datasets if d != dataset)]
    if st.session_state.get("met_ood") not in others:
        st.session_state["met_ood"] = NO_OOD
    ood = sb.selectbox(
        "Outliers", others, key="met_ood", help="Score this dataset's images as anomalies by reconstruction error"
    )
    return ckpt, dataset, split, int(limit), None if ood == NO_OOD else ood


def metrics_view() -> None:
    chosen = _choices()
    if chosen is None:
        return
    ckpt, dataset, split, limit, ood = chosen
    st.subheader(f"Metrics of {ckpt.name}")
    try:
        report = report_for(ckpt, dataset, split, limit=limit, ood=ood)
    except ExplorerError as exc:
        st.error(f"Cannot compute the metrics of {ckpt.name} on {dataset} ({split}): {exc}")
        return
    ctx = report.context
    st.caption(
        f"{ctx.get('images', 0):,} {dataset} {split} images. The kNN (k = 5) and the linear probe learn from the "
        f"codes of {ctx.get('train_images', 0):,} train images; PCA is fitted on {ctx.get('pca_train_images', 0):,} "
        f"and keeps {report.pca_components} numbers per image, as many as the model"
        + (f"; outliers: {ctx.get('ood_images', 0):,} {ood} images." if ood else ".")
    )
    left, right = st.columns([1, 1], gap="medium")
    with left:
        rows = [
            {
                "figure": title,
                "model": cell(model),
                f"PCA ({report.pca_components})": "" if pca is None else cell(pca),
            }
            for title, model, pca in report.rows()
        ]
        st.dataframe(rows, hide_index=True, width="stretch")
        likelihood = ""
        if "log_likelihood" in report.figures:
            likelihood = (
                f" ELBO and log-likelihood: nats per image on the first {ctx.get('likelihood_images', 0):,} images, "
                "the decoder read as a Bernoulli per pixel (the BCE it was trained with); the likelihood is "
                f"importance-sampled with k = {ctx.get('likelihood_k', 0)} draws from the posterior, a tighter "
                "bound than the ELBO (higher is better for both)."
            )
        st.caption(
            "Active units: posterior-mean variance over the images above 0.01. Dead features: never active on "
            "these images; dense: active on more than 10 % of them. Outlier AUROC: how often an outlier "
            "reconstructs worse than an inlier (1 = always, 0.5 = chance)." + likelihood
        )
    with right:
        n, mse = report.model_point
        fig = curve_figure([("PCA", report.pca_curve)], [(ckpt.name, n, mse)])
        st.plotly_chart(fig, key="met_curve", width="stretch", config={"displaylogo": False})
        gain = 1.0 - mse / float(report.figures["pca_recon_mse"] or np.nan)
        st.caption(
            f"PCA's error falls as it keeps more numbers per image. {ckpt.name} keeps {n} and reconstructs "
            f"{abs(100 * gain):.1f} % {'better' if gain >= 0 else 'worse'} than PCA with as many."
        )
