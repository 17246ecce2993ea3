"""The view in the address bar: every run writes it into the URL's query parameters, a new session
reads it back, and the sidebar's choices follow a person from page to page.

What a link holds (left out when a value is its default, so a plain link stays plain):
sidebar — ``ckpt`` (or ``model``, the SHA-256 of an uploaded one), ``ds``, ``split``, ``n``, ``proj``,
``nn``, ``md``, ``metric``, ``seed``, ``engine``, ``color``; the map — ``sel`` (selected ids, see
``explorer.urlstate.encode_ids``), ``spot`` and ``focus``; and each page's own controls (``steps``,
``path``, ``from``, ``a``, ``b``, ``count``, ``temp``, ``sseed``, ``dim``, ``tsteps``, ``mosaic``). Reading happens once, in a
session's first run, before any widget exists; a bad value is dropped and named above the page.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from explorer import urlstate
from explorer.selection import Picked
from explorer.urlstate import Field, choice, integer, number, point

READ = "url:read"  # set once the session's first run has read the link
NOTICES = "url:notices"  # what was dropped from the link, shown above the page
MAP_NOTICES = "url:map_notices"  # the same for what is checked against the map (shown above the map)
PENDING = "url:pending"  # values that can only be checked once the map exists (colour, selection)
PAGE = "url:page"  # the page of the last run
KEEP = "keep:"  # prefix of the copies that carry the sidebar's choices across pages

# The controls of the pages: fixed choices and bounds, so they are checked on reading.
PAGE_FIELDS = (
    Field("steps", "interp_steps", integer(2, 64), 16),
    Field("path", "interp_method", choice(["slerp", "lerp"]), "slerp"),
    Field("from", "interp_src", choice(["selection", "indices", "selection → spot"]), "selection"),
    Field("count", "samp_n", choice([16, 36, 64, 100]), 64),
    Field("temp", "samp_t", number(0.0, 2.0), 1.0),
    Field("sseed", "samp_seed", integer(0, 2**31 - 1), 0),
    Field("tsteps", "trav_steps", integer(3, 32), 12),
    Field("mosaic", "mosaic", choice([True, False]), False),
)
# Whole numbers whose bounds come from the map: checked against it once it exists.
MAP_INDEX_FIELDS = (("a", "interp_A"), ("b", "interp_B"), ("dim", "trav_dim"), ("focus", "sel_focus"))


def sidebar_fields(
    checkpoints: list[str], datasets: list[str], splits: list[str], sizes: list[int], projections: list[str],
    engines: list[str], metrics: list[str], default_checkpoint: str,
) -> tuple[Field, ...]:  # fmt: skip
    return (
        Field("ckpt", "ckpt", choice(checkpoints), default_checkpoint),
        Field("ds", "ds", choice(datasets)),
        Field("split", "split", choice(splits), "test"),
        Field("n", "n", choice(sizes), 10000),
        Field("proj", "proj", choice(projections), projections[0]),
        Field("nn", "nn", integer(5, 100), 15),
        Field("md", "md", number(0.0, 0.99), 0.1),
        Field("metric", "metric", choice(metrics), metrics[0]),
        Field("seed", "seed", integer(0, 2**31 - 1), 0),
        Field("engine", "engine", choice(engines), engines[0]),
    )


def _params() -> dict[str, str]:
    return {k: st.query_params.get(k, "") for k in st.query_params}


def _page_id() -> str:
    """Which page this run draws (Streamlit's own id of the page script)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    run = get_script_run_ctx()
    return getattr(run, "page_script_hash", "") if run is not None else ""


def restore_sidebar(fields: tuple[Field, ...], uploads: dict[str, str], reopen=None) -> None:
    """At the top of the sidebar, before its widgets. A session's first run takes the link's values; a
    run on another page than the last puts back the choices made so far (Streamlit forgets the state
    of a page's widgets when the page changes); every run gives the widgets their defaults through the
    session state, so no widget is given a default twice.

    ``uploads``: {SHA-256: name} of this session's uploaded checkpoints, for ``model=`` links; ``reopen(digest)``
    brings back an upload the host keeps on disk (a CheckpointRef with a ``name``), or returns None."""
    page, last = _page_id(), st.session_state.get(PAGE)
    st.session_state[PAGE] = page
    if not st.session_state.get(READ):
        st.session_state[READ] = True
        _read_link(fields, uploads, reopen)
    elif page != last:
        for field in fields:
            if KEEP + field.key in st.session_state:
                st.session_state[field.key] = st.session_state[KEEP + field.key]
    for field in fields:
        if field.default is not None and field.key not in st.session_state:
            st.session_state[field.key] = field.default


def _read_link(fields: tuple[Field, ...], uploads: dict[str, str], reopen) -> None:
    params = _params()
    values, notices = urlstate.read(params, fields + PAGE_FIELDS)
    if digest := params.get("model"):
        digest = digest.strip().lower()
        kept = reopen(digest) if reopen is not None and re.fullmatch(r"[0-9a-f]{64}", digest) else None
        if digest in uploads:
            values["ckpt"] = uploads[digest]
        elif kept is not None:  # the 256-bit digest is the capability: whoever holds the link sees the model
            values["ckpt"] = kept.name
        else:
            notices.append(
                f"This link names an uploaded model (SHA-256 {digest[:12]}…) that is not on this server: it was "
                "uploaded in another session. Showing a shipped checkpoint instead; upload the same file on "
                "“Your model” to see the linked view."
            )
    st.session_state.update(values)
    pending = ("color", "sel", "spot", "a", "b", "dim", "focus")
    st.session_state[PENDING] = {k: v for k, v in params.items() if k in pending}
    st.session_state[NOTICES] = notices


def remember_sidebar(fields: tuple[Field, ...]) -> None:
    for field in fields:
        if field.key in st.session_state:
            st.session_state[KEEP + field.key] = st.session_state[field.key]


def pending_colour(options: list[str]) -> None:
    """Before the "Colour by" box: the link's colour, if this map offers it."""
    pending = st.session_state.get(PENDING) or {}
    if (text := pending.pop("color", None)) is None:
        return
    if text in options:
        st.session_state["color"] = text
    else:
        st.session_state.setdefault(NOTICES, []).append(
            f"“color={text[:40]}” was ignored: this map has no such colouring."
        )


def pending_pick(n_rows: int, dims: int) -> Picked | None:
    """The link's selection and spot, checked against the map (once, in the first run); and the page
    controls that index into it."""
    pending = st.session_state.get(PENDING) or {}
    if not pending:
        return None
    st.session_state[PENDING] = {}
    notices = st.session_state.setdefault(MAP_NOTICES, [])
    ids: tuple[int, ...] = ()
    spot: tuple[float, float] | None = None
    try:
        ids = urlstate.decode_ids(pending["sel"], n_rows) if "sel" in pending else ()
    except ValueError as exc:
        notices.append(f"The link's selection was ignored: it {exc}.")
    if "spot" in pending and dims == 2:
        try:
            x, y = point(2)(pending["spot"])
            spot = (x, y)
        except ValueError as exc:
            notices.append(f"“spot={pending['spot'][:40]}” was ignored: it {exc}.")
    for param, key in MAP_INDEX_FIELDS:
        if param in pending:
            try:
                st.session_state[key] = integer(0, n_rows - 1)(pending[param])
            except ValueError as exc:
                notices.append(f"“{param}={pending[param][:40]}” was ignored: it {exc}.")
    return Picked(ids, spot) if ids or spot is not None else None


def show_notices(where: Any, key: str = NOTICES) -> None:
    """Each notice once: it stays on screen until the next run of that part of the page."""
    for text in st.session_state.pop(key, None) or []:
        where.warning(text, icon=":material/link_off:")


def write(params: dict[str, str], owned: tuple[str, ...]) -> None:
    """Make the URL hold ``params`` for the query parameters in ``owned`` (others, a page's own, stay)."""
    current = _params()
    for name in owned:
        value = params.get(name)
        if value is None:
            if name in current:
                del st.query_params[name]
        elif current.get(name) != value:
            st.query_params[name] = value


def sidebar_params(fields: tuple[Field, ...], colour: str, ckpt_digest: str | None, trained_on: str) -> dict[str, str]:
    values = {f.key: st.session_state.get(f.key) for f in fields}
    out = urlstate.written(values, fields)
    if out.get("ds") == trained_on:  # the checkpoint's own dataset is what a link without ``ds`` shows
        del out["ds"]
    if ckpt_digest is not None:  # an upload: named by its digest, which works only where the file is
        out.pop("ckpt", None)
        out["model"] = ckpt_digest
    if colour != "label":
        out["color"] = colour
    return out


SIDEBAR_OWNED = ("ckpt", "model", "ds", "split", "n", "proj", "nn", "md", "metric", "seed", "engine", "color")
MAP_OWNED = ("sel", "spot", "focus", *(f.param for f in PAGE_FIELDS), "a", "b", "dim")


def map_params(pick: Picked) -> dict[str, str]:
    out = urlstate.written({f.key: st.session_state.get(f.key) for f in PAGE_FIELDS}, PAGE_FIELDS)
    if pick.ids:
        text = urlstate.encode_ids(pick.ids)
        if len(text) <= urlstate.MAX_IDS_CHARS:
            out["sel"] = text
    if pick.spot is not None:
        out["spot"] = ",".join(f"{v:.6g}" for v in pick.spot)
    for param, key in MAP_INDEX_FIELDS:
        value = st.session_state.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and (param != "focus" or value in pick.ids):
            out[param] = str(value)
    return out
