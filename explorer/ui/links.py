"""The view in the address bar: every run writes it into the URL's query parameters, a new session
reads it back, and the sidebar's choices follow a person from page to page.

What a link holds (left out when a value is its default, so a plain link stays plain):
sidebar — ``ckpt`` (or ``model``, the SHA-256 of an uploaded one), ``ds``, ``split``, ``n``, ``proj``,
``nn``, ``md``, ``metric``, ``seed``, ``engine``, ``color``; the map — ``sel`` (selected ids, see
``explorer.ui.urlstate.encode_ids``), ``spot`` and ``focus``; and each page's own controls (``steps``,
``path``, ``from``, ``a``, ``b``, ``count``, ``temp``, ``sseed``, ``dim``, ``tsteps``, ``mosaic``); the view of the
map — ``view`` (a 2-D zoom), ``cam`` (a 3-D camera) and ``hide`` (classes hidden with the legend). Reading
happens in a session's first run, before any widget exists, and again when the browser goes Back or Forward
(the page then shows what that address holds); a bad value is dropped and named above the page.

Writing: each part of the page stages what it wants in the URL, and one ``flush`` per run writes it all in
one message, so a run makes at most one browser history entry. ``history_guard`` (mounted on every page)
keeps entries for steps only: a change of page, checkpoint, images or projection, or of the selection.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from explorer.maps.selection import Picked
from explorer.ui import urlstate
from explorer.ui.map_bridge import View
from explorer.ui.map_view import VIEW, first_view
from explorer.ui.urlstate import Field, choice, integer, number, point

READ = "url:read"  # set once the session's first run has read the link
NOTICES = "url:notices"  # what was dropped from the link, shown above the page
MAP_NOTICES = "url:map_notices"  # the same for what is checked against the map (shown above the map)
PENDING = "url:pending"  # values that can only be checked once the map exists (colour, selection)
PAGE = "url:page"  # the page of the last run
KEEP = "keep:"  # prefix of the copies that carry the sidebar's choices across pages
STAGED = "url:staged"  # {part of the page: {query parameter: text}}, written together by ``flush``
# what a person calls a step: an address differing in these (or in its page) gets its own history entry
STEPS = ("ckpt", "model", "ds", "split", "n", "proj", "sel", "spot")

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
    run = get_script_run_ctx()
    return getattr(run, "page_script_hash", "") if run is not None else ""


def _history_navigation() -> bool:
    """True in the run Streamlit starts when the browser goes Back or Forward."""
    run = get_script_run_ctx()
    return bool(getattr(run, "is_history_navigation", False))


def restore_sidebar(fields: tuple[Field, ...], by_digest=None) -> None:
    """At the top of the sidebar, before its widgets. A session's first run takes the link's values, and so
    does a run started by the browser's Back or Forward (every value the address leaves out goes back to
    its default); a run on another page than the last puts back the choices made so far (Streamlit forgets
    the state of a page's widgets when the page changes); every run gives the widgets their defaults
    through the session state, so no widget is given a default twice.

    ``by_digest(digest)``: the checkpoint (anything with a ``name``) a ``model=`` link names by its SHA-256, or
    None (``state.checkpoint_by_digest``)."""
    page, last = _page_id(), st.session_state.get(PAGE)
    st.session_state[PAGE] = page
    if not st.session_state.get(READ):
        st.session_state[READ] = True
        _read_link(fields, by_digest)
    elif _history_navigation():
        _read_link(fields, by_digest, whole=True)
    elif page != last:
        for field in fields:
            if KEEP + field.key in st.session_state:
                st.session_state[field.key] = st.session_state[KEEP + field.key]
    for field in fields:
        if field.default is not None and field.key not in st.session_state:
            st.session_state[field.key] = field.default


def _read_link(fields: tuple[Field, ...], by_digest, *, whole: bool = False) -> None:
    """The link's values into the session. ``whole``: the address is the whole view (Back, Forward), so what
    it leaves out is a default, not "as before"."""
    params = _params()
    if whole:
        for field in fields + PAGE_FIELDS:
            st.session_state.pop(field.key, None)
        for _, key in MAP_INDEX_FIELDS:
            st.session_state.pop(key, None)
    values, notices = urlstate.read(params, fields + PAGE_FIELDS)
    if digest := params.get("model"):
        digest = digest.strip().lower()
        # a kept upload's 256-bit digest is the capability: whoever holds the link sees the model
        if (ref := by_digest(digest) if by_digest is not None else None) is not None:
            values["ckpt"] = ref.name
        else:
            notices.append(
                f"This link names an uploaded model (SHA-256 {digest[:12]}…) that is not on this server: it was "
                "uploaded in another session. Showing a shipped checkpoint instead; upload the same file on "
                "“Your model” to see the linked view."
            )
    st.session_state.update(values)
    pending = ("color", "sel", "spot", "a", "b", "dim", "focus", "view", "cam", "hide")
    st.session_state[PENDING] = {k: v for k, v in params.items() if k in pending}
    if whole:
        st.session_state[PENDING].setdefault("color", "label")
        st.session_state[PENDING]["whole"] = "1"  # no selection in the address: none on the map
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


def pending_pick(n_rows: int, dims: int, class_names: list[str] | None = None) -> Picked | None:
    """The link's selection and spot, checked against the map (once, in the first run); the page
    controls that index into it; and the view it opens on (kept for ``pending_view``)."""
    pending = st.session_state.get(PENDING) or {}
    if not pending:
        return None
    st.session_state[PENDING] = {}
    whole = "whole" in pending
    view = {k: pending[k] for k in ("view", "cam", "hide") if k in pending}
    if view:
        st.session_state[PENDING_VIEW] = view
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
    if ids or spot is not None:
        return Picked(ids, spot)
    return Picked() if whole else None


PENDING_VIEW = "url:view"  # the view a link opens on, read once the map exists


def pending_view(class_names: list[str], dims: int):
    """The link's zoom (``view=x0,x1,y0,y1``), camera (``cam=`` nine numbers) and hidden classes (``hide=`` class
    indices) as a ``map_bridge.View``, checked; None when the link names none. Bad values are named above the map."""
    raw = st.session_state.pop(PENDING_VIEW, None)
    if not raw:
        return None
    notices = st.session_state.setdefault(MAP_NOTICES, [])
    rng = cam = None
    hidden: list[str] = []
    if "view" in raw and dims == 2:
        try:
            x0, x1, y0, y1 = point(4)(raw["view"])
            if not (x0 < x1 and y0 < y1):
                raise ValueError("must be x0,x1,y0,y1 with x0 < x1 and y0 < y1")
            rng = (x0, x1, y0, y1)
        except ValueError as exc:
            notices.append(f"“view={raw['view'][:40]}” was ignored: it {exc}.")
    if "cam" in raw and dims == 3:
        try:
            cam = point(9, bound=1e3)(raw["cam"])
        except ValueError as exc:
            notices.append(f"“cam={raw['cam'][:40]}” was ignored: it {exc}.")
    if "hide" in raw:
        for part in raw["hide"].split(",")[:1000]:
            try:
                hidden.append(class_names[integer(0, len(class_names) - 1)(part)])
            except (ValueError, IndexError):
                notices.append(
                    f"“hide={raw['hide'][:40]}” was partly ignored: {part[:12]!r} is not a class of this map."
                )
                break
    return View(rng, cam, tuple(hidden))


def view_params(view, class_names: list[str]) -> dict[str, str]:
    """A ``map_bridge.View`` as query parameters (see ``pending_view``)."""
    if view is None:
        return {}
    out: dict[str, str] = {}
    if view.range is not None:
        out["view"] = ",".join(f"{v:.5g}" for v in view.range)
    if view.camera is not None:
        out["cam"] = ",".join(f"{v:.4g}" for v in view.camera)
    index = {name: i for i, name in enumerate(class_names)}
    hidden = sorted(index[name] for name in view.hidden if name in index)
    if hidden:
        out["hide"] = ",".join(map(str, hidden))
    return out


def show_notices(where: Any, key: str = NOTICES) -> None:
    """Each notice once: it stays on screen until the next run of that part of the page."""
    for text in st.session_state.pop(key, None) or []:
        where.warning(text, icon=":material/link_off:")


def begin_run() -> None:
    """At the top of every whole run (not of a fragment's): the parts of the page stage their parameters anew."""
    st.session_state[STAGED] = {}


def stage(part: str, params: dict[str, str]) -> None:
    """What one part of the page ("sidebar", "map", a page's own) wants in the URL, replacing its earlier wish."""
    st.session_state.setdefault(STAGED, {})[part] = dict(params)


def flush(*, fragment_only: bool = False) -> None:
    """Make the URL hold every staged part, in one message (so at most one history entry). ``fragment_only``:
    only in a run of a fragment alone (a whole run flushes once, at its end)."""
    if fragment_only:
        run = get_script_run_ctx()
        if run is None or not getattr(run, "fragment_ids_this_run", None):
            return
    wanted: dict[str, str] = {}
    for part in (st.session_state.get(STAGED) or {}).values():
        wanted.update(part)
    if wanted != _params():
        st.query_params.from_dict(wanted)


def sidebar_params(
    fields: tuple[Field, ...], colour: str, ckpt_digest: str | None, trained_on: str, *, all_is_default: bool = False
) -> dict[str, str]:
    """The sidebar's part of the URL. ``all_is_default``: the images to map are all of a split no larger than
    the default size, which is what a link without ``n`` shows."""
    values = {f.key: st.session_state.get(f.key) for f in fields}
    out = urlstate.written(values, fields)
    if all_is_default and out.get("n") == "0":
        del out["n"]
    if out.get("ds") == trained_on:  # the checkpoint's own dataset is what a link without ``ds`` shows
        del out["ds"]
    if ckpt_digest is not None:  # an upload: named by its digest, which works only where the file is
        out.pop("ckpt", None)
        out["model"] = ckpt_digest
    if colour != "label":
        out["color"] = colour
    return out


def map_params(pick: Picked, ctx=None) -> dict[str, str]:
    """The map's part of the URL: selection, spot, page controls and, given the map's context, its view."""
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
    if ctx is not None:
        view = st.session_state.get(VIEW) or first_view(ctx)
        out.update(view_params(view, ctx.map.class_names))
    return out


# Streamlit adds a browser history entry for every change of the address its server sends. In the page, this
# turns each such push into a replacement unless it is the first since the person last did something and it
# changes a step (the page, or a parameter in STEPS): one entry per step, and Back goes to the step before.
_HISTORY_JS = """
export default function (component) {
  const { data } = component;
  const H = window.history;
  if (H.__lxGuard) { H.__lxGuard.steps = data.steps; return; }
  const guard = { steps: data.steps, pushed: true };  // the page's own first load counts as a step taken
  H.__lxGuard = guard;
  const push = H.pushState.bind(H), replace = H.replaceState.bind(H);
  const acted = () => { guard.pushed = false; };
  for (const type of ['pointerdown', 'keydown']) window.addEventListener(type, acted, true);
  H.pushState = function (state, title, url) {
    let step = true;
    try {
      const next = new URL(url, window.location.href), now = new URL(window.location.href);
      step = next.pathname !== now.pathname ||
        guard.steps.some((k) => next.searchParams.get(k) !== now.searchParams.get(k));
    } catch (err) { /* an address this page cannot read: leave it to the browser */ }
    if (step && !guard.pushed) { guard.pushed = true; return push(state, title, url); }
    return replace(state, title, url);
  };
}
"""
_history = st.components.v2.component("explorer.history_guard", js=_HISTORY_JS)


def history_guard() -> None:
    """Mount the page-side rule for history entries (see ``_HISTORY_JS``); on every page, once per run."""
    _history(data={"steps": list(STEPS)}, key="history_guard")
