"""Features of a sparse autoencoder, measured on encoded data: the numbers behind the Features pages.

A sparse model's code (N, F) says, per image, how strongly each of its F features fires (zero for
most). From the codes of a mapped dataset this module computes each feature's activation frequency
and mean activation, flags dead and dense features, picks example images (the strongest, a few from
each quantile band of the non-zero activations, those where the feature is the image's strongest),
and a histogram. From the model's decoder it computes each feature's direction (its "atom"), the
cosine similarity between directions, a 2-D map of the features, and steered decodes: an image's
code with more or less of one feature.

Everything here is numpy in, numpy out (torch only inside, for the model) and never imports
Streamlit; the UI caches the results by checkpoint digest and map key.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from explorer.errors import ExplorerError
from explorer.maps.ops import decode
from explorer.maps.pipeline import sha256
from explorer.maps.projection import ProjectionParams, fit
from explorer.models.base import Autoencoder

DENSE_SHARE = 0.10  # a feature active on more than this share of images is "dense": it says little about any one
SORTS = ("frequency", "mean activation when active", "mean activation over all images", "index")
FEATURE_MAP_VERSION = 2


class FeatureError(ExplorerError):
    """A feature question this model or these codes cannot answer (not sparse, no such feature)."""


def require_sparse(model: Autoencoder) -> None:
    """Raise unless the model's codes are sparse features (the ``sparse_codes`` hook)."""
    if not model.sparse_codes:
        raise FeatureError(
            f"a {model.kind} model's {model.code_name}s are not sparse features: every image uses all "
            f"{model.latent_dim} of them, so frequencies, dead and dense features mean nothing here"
        )


def check_feature(feature: int, n_features: int) -> int:
    if isinstance(feature, bool) or not isinstance(feature, (int, np.integer)) or not 0 <= feature < n_features:
        raise FeatureError(f"features are numbered 0 to {n_features - 1}, got {feature!r}")
    return int(feature)


def parse_feature(text: object, n_features: int) -> int:
    """A feature index from a string a stranger typed (a URL query parameter); FeatureError if it is not one."""
    value = str(text).strip().lstrip("#").strip()
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise FeatureError(f"{str(text)[:40]!r} is not a feature number (this model's run from 0 to {n_features - 1})")
    return check_feature(int(value), n_features)


# ----------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class FeatureStats:
    """Per-feature numbers over N encoded images. Arrays are (F,) unless noted."""

    count: np.ndarray  # int64: images where the feature is active (> 0)
    frequency: np.ndarray  # float64: count / N, the feature's density
    mean_active: np.ndarray  # float64: mean activation over the images where it is active (0 if never)
    mean_all: np.ndarray  # float64: mean activation over all N images
    max_activation: np.ndarray  # float32
    strongest: np.ndarray  # (N,) int64: each image's strongest feature, -1 for an all-zero code
    n_images: int
    dense_share: float = DENSE_SHARE

    @property
    def n_features(self) -> int:
        return len(self.count)

    @property
    def dead(self) -> np.ndarray:
        """(F,) bool: never active on these images."""
        return self.count == 0

    @property
    def dense(self) -> np.ndarray:
        """(F,) bool: active on more than ``dense_share`` of the images."""
        return self.frequency > self.dense_share

    def mean_l0(self) -> float:
        """Active features per image, on average."""
        return float(self.count.sum() / max(1, self.n_images))

    def order(self, by: str = SORTS[0], *, descending: bool = True) -> np.ndarray:
        """Feature ids sorted by one of ``SORTS``; ties keep index order."""
        keys = {SORTS[0]: self.frequency, SORTS[1]: self.mean_active, SORTS[2]: self.mean_all}
        if by == SORTS[3]:
            ids = np.arange(self.n_features)
            return ids[::-1].copy() if descending else ids
        if by not in keys:
            raise FeatureError(f"unknown sort {by!r}; known: {', '.join(SORTS)}")
        return np.argsort(-keys[by] if descending else keys[by], kind="stable")


def feature_stats(codes: np.ndarray, *, dense_share: float = DENSE_SHARE) -> FeatureStats:
    """Frequencies, mean activations and each image's strongest feature from codes (N, F)."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] == 0:
        raise FeatureError(f"codes must be (N, F) with F >= 1, got {codes.shape}")
    if not 0.0 < float(dense_share) < 1.0:
        raise FeatureError(f"the dense threshold must be a share between 0 and 1, got {dense_share}")
    n, f = codes.shape
    active = codes > 0  # (N, F) bool
    count = active.sum(0, dtype=np.int64)
    total = np.where(active, codes, 0).sum(0, dtype=np.float64)  # (F,) sum of the positive activations
    strongest = np.argmax(codes, axis=1).astype(np.int64) if n else np.zeros(0, np.int64)  # (N,)
    if n:
        strongest[~active.any(1)] = -1
    return FeatureStats(
        count=count,
        frequency=count / max(1, n),
        mean_active=np.divide(total, count, out=np.zeros(f), where=count > 0),
        mean_all=codes.sum(0, dtype=np.float64) / max(1, n),
        max_activation=codes.max(0).astype(np.float32) if n else np.zeros(f, np.float32),
        strongest=strongest,
        n_images=n,
        dense_share=float(dense_share),
    )


# ----------------------------------------------------------------------------------- example images


def top_activating(codes: np.ndarray, feature: int, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The (at most) k images where ``feature`` fires hardest: (ids (K,) int64, activations (K,)), strongest first.

    Images where it is off are never included, so a rare feature returns fewer than k."""
    col = np.asarray(codes)[:, check_feature(feature, np.shape(codes)[1])]  # (N,)
    active = np.flatnonzero(col > 0)
    k = min(int(k), len(active))
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, col.dtype)
    top = active[np.argpartition(-col[active], k - 1)[:k]]
    top = top[np.lexsort((top, -col[top]))]  # by activation, ties by index: the same order on every run
    return top.astype(np.int64), col[top]


@dataclass(frozen=True)
class Band:
    """Images from one quantile band of a feature's non-zero activations."""

    q_lo: float  # quantile range of the band, e.g. 0.8 to 1.0 for the top fifth
    q_hi: float
    lo: float  # activation range of the images in the band
    hi: float
    size: int  # how many images fall in it
    ids: np.ndarray  # (K,) int64: examples, strongest first
    values: np.ndarray  # (K,) their activations


def quantile_bands(codes: np.ndarray, feature: int, *, n_bands: int = 5, per_band: int = 8) -> list[Band]:
    """Examples across the whole range of a feature's activity, highest band first.

    The images where the feature is active are ranked by activation and cut into ``n_bands`` bands of
    equal count (quantiles); each band shows ``per_band`` images spread evenly through its ranks (not a
    random draw: the page must be the same on every rerun). Top activations alone over-sell a feature;
    the lower bands show what it does most of the time. Fewer active images than bands: one band each."""
    if n_bands < 1 or per_band < 1:
        raise FeatureError("need at least one band and one image per band")
    col = np.asarray(codes)[:, check_feature(feature, np.shape(codes)[1])]
    active = np.flatnonzero(col > 0)
    ranked = active[np.lexsort((active, col[active]))]  # (A,) weakest first
    n = min(int(n_bands), len(ranked))  # every band gets at least one image
    bands = []
    for b in range(n):
        members = ranked[b * len(ranked) // n : (b + 1) * len(ranked) // n]  # (M,) weakest first
        picks = np.unique(np.linspace(0, len(members) - 1, min(per_band, len(members))).round().astype(int))
        ids = members[picks][::-1].astype(np.int64)  # strongest first
        lo, hi = float(col[members[0]]), float(col[members[-1]])
        bands.append(Band(b / n, (b + 1) / n, lo, hi, len(members), ids, col[ids]))
    return bands[::-1]


def strongest_for(
    stats: FeatureStats, codes: np.ndarray, feature: int, k: int = 16
) -> tuple[np.ndarray, np.ndarray, int]:
    """Images whose strongest feature is this one: (ids (K,), activations (K,), how many images in all)."""
    feature = check_feature(feature, stats.n_features)
    ids = np.flatnonzero(stats.strongest == feature)
    col = np.asarray(codes)[ids, feature]
    order = np.lexsort((ids, -col))[: int(k)]
    return ids[order].astype(np.int64), col[order], len(ids)


def activation_histogram(codes: np.ndarray, feature: int, bins: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of the non-zero activations: (counts (bins,), edges (bins + 1,)); empty for a dead feature."""
    col = np.asarray(codes)[:, check_feature(feature, np.shape(codes)[1])]
    values = col[col > 0].astype(np.float64)
    if not len(values):
        return np.zeros(0, np.int64), np.zeros(0)
    hi = float(values.max())
    return np.histogram(values, bins=int(bins), range=(0.0, hi if hi > 0 else 1.0))


# ----------------------------------------------------------------------------------- decoder directions


@torch.no_grad()
def decoder_directions(model: Autoencoder, *, batch_size: int = 256) -> np.ndarray:
    """Each feature's direction in the decoder's output: (F, C*H*W) float32.

    Computed as decode_logits(e_i) - decode_logits(0): the decoder's response to one unit of feature
    i, measured before the output nonlinearity. Why this and not the alternatives:
    - the weight row W_dec[i] is the same thing for the SAE's linear dictionary (checked by a test)
      but reaches into one model's parameters; the difference needs only the public contract, and
      for any other decoder it is the finite-difference response to the feature;
    - decode(e_i) in pixels is sigmoid(b_dec + W_dec[i]): mostly the bias image (an average garment),
      with the atom hard to see;
    - decode(a e_i) - decode(0) in pixels is squashed by the sigmoid: where the bias saturates (a black
      background at logit -10) a feature adding ink shows nothing.
    """
    require_sparse(model)
    f = model.latent_dim
    base = model.decode_logits(torch.zeros(1, f, device=model.device, dtype=model.dtype)).float()  # (1, C, H, W)
    out = np.empty((f, int(np.prod(model.input_shape))), np.float32)
    eye = torch.eye(f, dtype=model.dtype)
    for i in range(0, f, batch_size):
        z = eye[i : i + batch_size].to(model.device)  # (B, F) one-hot codes
        out[i : i + len(z)] = (model.decode_logits(z).float() - base).flatten(1).cpu().numpy()
    return out


def unit_rows(directions: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, (F, D) float32; an all-zero row stays zero."""
    d = np.asarray(directions, dtype=np.float32)
    norms = np.linalg.norm(d, axis=1, keepdims=True)
    return np.divide(d, norms, out=np.zeros_like(d), where=norms > 0)


def most_similar(unit: np.ndarray, feature: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The k features whose decoder directions point most nearly the same way: (ids (k,), cosines (k,)).

    ``unit`` is (F, D) from ``unit_rows``; the feature itself is left out. High cosine means two
    features paint nearly the same thing (a split or duplicated feature)."""
    feature = check_feature(feature, len(unit))
    cos = unit @ unit[feature]  # (F,)
    cos[feature] = -np.inf
    k = min(int(k), len(unit) - 1)
    if k <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    top = np.argpartition(-cos, k - 1)[:k]
    top = top[np.lexsort((top, -cos[top]))]
    return top.astype(np.int64), cos[top].astype(np.float32)


def atom_images(directions: np.ndarray, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Directions (F, C*H*W) as pictures: (F, H, W, 3) uint8.

    Each atom is scaled by its own 99th percentile of |value| (not its maximum: one extreme pixel
    would leave the rest near zero) and clipped to [-1, 1]. One channel: a diverging map on white,
    red where the feature adds brightness, blue where it removes it, white where it does nothing
    (faint strokes are lifted by a 0.7 gamma). Three channels: mid-grey is zero, each channel moves
    up or down with the direction."""
    c, h, w = input_shape
    d = np.asarray(directions, dtype=np.float32).reshape(-1, c, h, w)
    scale = np.percentile(np.abs(d).reshape(len(d), -1), 99, axis=1)[:, None, None, None]  # (F, 1, 1, 1)
    t = np.clip(np.divide(d, scale, out=np.zeros_like(d), where=scale > 0), -1.0, 1.0)  # (F, C, H, W)
    if c == 3:
        return np.round(127.5 + 127.5 * t.transpose(0, 2, 3, 1)).astype(np.uint8)
    pos, neg = np.clip(t[:, 0], 0, 1) ** 0.7, np.clip(-t[:, 0], 0, 1) ** 0.7  # (F, H, W)
    to_red = np.array([0, 200, 230], np.float32)  # white minus this: a strong red
    to_blue = np.array([220, 140, 0], np.float32)  # white minus this: a strong blue
    rgb = 255.0 - pos[..., None] * to_red - neg[..., None] * to_blue  # (F, H, W, 3)
    return np.round(np.clip(rgb, 0, 255)).astype(np.uint8)


def framed(image: np.ndarray, colour: tuple[int, int, int], width: int = 3) -> np.ndarray:
    """A copy of one RGB image (H, W, 3) uint8 with a coloured frame drawn over its outer ``width`` pixels."""
    out = np.array(image, dtype=np.uint8, copy=True)
    out[:width], out[-width:], out[:, :width], out[:, -width:] = colour, colour, colour, colour
    return out


# ----------------------------------------------------------------------------------- steering


def steer(code: np.ndarray, feature: int, alphas: np.ndarray) -> np.ndarray:
    """Copies of one code (F,) with alpha added to ``feature``, one per alpha: (T, F) float32.

    The coordinate becomes max(0, z_f + alpha): a negative alpha takes the feature away, down to
    nothing, but never below zero, which no encoder of non-negative codes produces (the decoder has
    never been shown such a code). Alpha 0 gives the code unchanged, so its decode is the
    reconstruction. The decoder being linear in the code for an SAE, adding alpha to z_f adds
    alpha times the feature's direction to the decoder's output."""
    z = np.asarray(code, dtype=np.float32)
    if z.ndim != 1:
        raise FeatureError(f"steering needs one code (F,), got {z.shape}")
    feature = check_feature(feature, len(z))
    alphas = np.asarray(alphas, dtype=np.float32).reshape(-1)  # (T,)
    if not np.isfinite(alphas).all():
        raise FeatureError("steering strengths must be finite")
    out = np.repeat(z[None], len(alphas), axis=0)  # (T, F)
    out[:, feature] = np.maximum(0.0, z[feature] + alphas)
    return out


def steering_range(stats: FeatureStats, feature: int) -> float:
    """A strength that visibly moves an image: 1.5x the feature's largest activation on the data (1 if dead)."""
    top = float(stats.max_activation[check_feature(feature, stats.n_features)])
    return round(1.5 * top, 2) if top > 0 else 1.0


def steered_images(model: Autoencoder, code: np.ndarray, feature: int, alphas: np.ndarray) -> np.ndarray:
    """Decodes of ``steer(code, feature, alphas)``: uint8 (T, H, W) or (T, H, W, 3)."""
    return decode(model, steer(code, feature, alphas))


# ----------------------------------------------------------------------------------- a map of the features


def near_copies(unit: np.ndarray, threshold: float = 0.999, *, block: int = 1024) -> np.ndarray:
    """For unit rows (R, D): (R,) int64, the first row each one nearly copies (cosine > threshold), or itself."""
    owner = np.arange(len(unit))
    for start in range(0, len(unit), block):
        sims = unit[start : start + block] @ unit.T  # (B, R)
        for b, row in enumerate(sims):
            i = start + b
            if owner[i] != i:
                continue  # already a copy of an earlier row
            later = np.flatnonzero(row > threshold)
            later = later[(later > i) & (owner[later] == later)]
            owner[later] = i
    return owner


def feature_map(
    directions: np.ndarray,
    include: np.ndarray | None = None,
    *,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> np.ndarray:
    """2-D positions (F, 2) float32 of the features: UMAP of their unit decoder directions under the cosine
    metric (the explorer's own fit; 1 to 3 s for 1,024 features), so features that paint alike sit together.

    Only the features in ``include`` (F,) bool are laid out, the others get NaN (the page passes the
    live ones). Near-copies (cosine > 0.999; an SAE's resampling can point several features at the
    same image) are laid out once and their copies drawn in a small ring around that place: UMAP
    gives identical points all their neighbour weight to each other, which cuts every group of
    copies loose from the rest and flings it to the edge of the map, squeezing everything else."""
    unit = unit_rows(directions)
    keep = np.ones(len(unit), bool) if include is None else np.asarray(include, bool)
    out = np.full((len(unit), 2), np.nan, np.float32)
    rows = np.flatnonzero(keep)
    owner = near_copies(unit[rows])  # (R,) index into rows
    firsts = np.flatnonzero(owner == np.arange(len(rows)))  # the rows laid out
    if len(firsts) < 4:  # too few for neighbours: a line is as good a map as any
        placed = np.stack([np.arange(len(firsts)), np.zeros(len(firsts))], 1).astype(np.float32)
    else:
        k = min(15, len(firsts) - 1)
        params = ProjectionParams("umap", 2, n_neighbors=k, min_dist=0.1, metric="cosine", seed=seed)
        placed = fit(unit[rows[firsts]], params, progress=progress or (lambda f, m: None)).embedding  # (U, 2)
    where = np.searchsorted(firsts, owner)  # (R,) each row's laid-out original, as an index into placed
    pos = placed[where].astype(np.float64)  # (R, 2)
    spread = float(np.ptp(placed, axis=0).max()) if len(placed) > 1 else 1.0
    for i in np.unique(owner[owner != np.arange(len(rows))]):
        copies = np.flatnonzero((owner == i) & (np.arange(len(rows)) != i))
        angle = 2 * np.pi * np.arange(len(copies)) / len(copies)
        pos[copies] += 0.012 * spread * np.stack([np.cos(angle), np.sin(angle)], 1)
    out[rows] = pos
    return out


def feature_map_key(checkpoint_digest: str, data_key: str) -> str:
    """Disk-cache key of a feature map: the decoder, and the images that decide which features are live."""
    return sha256(f"feature-map/{FEATURE_MAP_VERSION}/{checkpoint_digest}/{data_key}".encode())


def map_to_bytes(embedding: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, version=np.array(FEATURE_MAP_VERSION), embedding=np.asarray(embedding, np.float32))
    return buf.getvalue()


def map_from_bytes(data: bytes, n_features: int) -> np.ndarray | None:
    """A stored feature map, or None if it is from another version or another number of features."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            emb = f["embedding"]
            ok = int(f["version"]) == FEATURE_MAP_VERSION and emb.shape == (n_features, 2)
    except (OSError, ValueError, KeyError):
        return None
    return emb.astype(np.float32) if ok else None
