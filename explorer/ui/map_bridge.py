"""What a map does in the page itself, without waiting for the server: a hovered point shows its image,
a click on a 3-D map selects the point under it, and a zoom, pan or legend filter is reported so that a
link can restore the view.

One ``st.components.v2`` component per page, a script in the page (no iframe). It finds the page's Plotly
maps by their ``layout.meta.lx``, the name of a set of sprite sheets (``explorer.figures.images.SpriteSheets``):
PNG sheets of every mapped image, served once as media files and kept decoded by the page, so showing a
hovered image is a copy from memory into a small canvas.

Clicks on a 3-D map are worked out here too: Plotly reports a 3-D click only from a frame drawn while
the button is down, which software-rendered Chromium often does not draw in time. The script projects
every point with the scene's own camera matrices and picks the one nearest the click, if any lies
within a few pixels.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from explorer.figures.images import SpriteSheets

log = logging.getLogger(__name__)

CLICK_RADIUS_PX = 14  # a 3-D click selects the nearest point drawn within this distance of the pointer
HOVER_PX = 112  # the hovered image is drawn about this many pixels high

_COMMON_JS = """
const STATE = window.__lxMap || (window.__lxMap = { sets: {}, images: {}, report: null, box: null, last: null });

function sheet(set, index) {
  const url = set.urls[index];
  let img = STATE.images[url];
  if (!img) { img = new Image(); img.decoding = 'async'; img.src = url; STATE.images[url] = img; }
  return img;
}

"""

_JS = (
    _COMMON_JS
    + """
function hoverBox() {
  if (STATE.box && document.body.contains(STATE.box)) return STATE.box;
  const box = document.createElement('canvas');
  box.className = 'lx-hover';
  Object.assign(box.style, { position: 'fixed', zIndex: 100000, pointerEvents: 'none', display: 'none',
    imageRendering: 'pixelated', border: '1px solid rgba(49, 51, 63, 0.35)', borderRadius: '4px',
    background: 'white', boxShadow: '0 2px 10px rgba(0, 0, 0, 0.25)' });
  document.body.appendChild(box);
  STATE.box = box;
  return box;
}

function showImage(gd, id, x, y) {
  const set = STATE.sets[gd.layout && gd.layout.meta && gd.layout.meta.lx];
  if (!set || !(id >= 0 && id < set.n)) return;
  const img = sheet(set, Math.floor(id / set.per));
  const cell = id % set.per;
  const box = hoverBox();
  const scale = Math.max(1, Math.round(set.target / set.h));
  const w = set.w * scale, h = set.h * scale;
  const draw = () => {
    box.width = w; box.height = h;
    const ctx = box.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, (cell % set.cols) * set.w, Math.floor(cell / set.cols) * set.h, set.w, set.h, 0, 0, w, h);
    // above and to the left of the pointer: Plotly's own label takes the right-hand side
    const left = x - w - 18 >= 4 ? x - w - 18 : x + 18;
    const top = Math.min(Math.max(4, y - h - 12), window.innerHeight - h - 4);
    Object.assign(box.style, { left: left + 'px', top: top + 'px', display: 'block' });
    STATE.last = { id, shownAt: performance.now() };
    requestAnimationFrame(() => { if (STATE.last && STATE.last.id === id) STATE.last.paintedAt = performance.now(); });
  };
  if (img.complete && img.naturalWidth) draw();
  else img.addEventListener('load', () => { if (STATE.hovered === id) draw(); }, { once: true });
}

function hideImage() {
  STATE.hovered = null;
  if (STATE.box) STATE.box.style.display = 'none';
}

function rowId(point) {
  const cd = point && point.customdata;
  if (cd === undefined || cd === null) return null;
  return Number(Array.isArray(cd) ? cd[0] : cd);
}

// column-major 4x4 products, as the scene's matrices are stored
function mul(a, b) {
  const out = new Array(16).fill(0);
  for (let c = 0; c < 4; c++) for (let r = 0; r < 4; r++) {
    let v = 0;
    for (let k = 0; k < 4; k++) v += a[k * 4 + r] * b[c * 4 + k];
    out[c * 4 + r] = v;
  }
  return out;
}

function nearest3d(gd, clientX, clientY, radius) {
  const scene = gd._fullLayout && gd._fullLayout.scene && gd._fullLayout.scene._scene;
  const plot = scene && scene.glplot;
  if (!plot || !plot.cameraParams) return null;
  const { view, projection, model } = plot.cameraParams;
  const m = mul(projection, mul(view, model));
  const rect = plot.canvas.getBoundingClientRect();
  let best = null;
  for (const obj of plot.objects) {
    const trace = obj._trace && obj._trace.data;
    if (!trace || !trace.customdata || trace.visible === 'legendonly' || trace.visible === false) continue;
    const points = obj.points || [];
    for (let i = 0; i < points.length; i++) {
      const [x, y, z] = points[i];
      const w = m[3] * x + m[7] * y + m[11] * z + m[15];
      if (!(w > 0)) continue;
      const sx = rect.left + ((m[0] * x + m[4] * y + m[8] * z + m[12]) / w + 1) / 2 * rect.width;
      const sy = rect.top + (1 - (m[1] * x + m[5] * y + m[9] * z + m[13]) / w) / 2 * rect.height;
      const d = Math.hypot(sx - clientX, sy - clientY);
      if (d <= radius && (!best || d < best.d - 0.5 || (Math.abs(d - best.d) <= 0.5 && w < best.w))) {
        best = { d, w, id: rowId({ customdata: trace.customdata[i] }) };
      }
    }
  }
  return best;
}

function currentView(gd) {
  const fl = gd._fullLayout;
  const hidden = (gd._fullData || []).filter(t => t.customdata && t.visible === 'legendonly').map(t => t.name);
  const view = { hidden };
  if (fl.scene) {
    const cam = fl.scene.camera;
    view.camera = [cam.eye.x, cam.eye.y, cam.eye.z, cam.center.x, cam.center.y, cam.center.z, cam.up.x, cam.up.y, cam.up.z];
  } else if (fl.xaxis && fl.yaxis && !(fl.xaxis.autorange && fl.yaxis.autorange)) {
    view.range = [fl.xaxis.range[0], fl.xaxis.range[1], fl.yaxis.range[0], fl.yaxis.range[1]];
  }
  return view;
}

function attach(gd) {
  if (gd.__lxBridge || !gd.on || !gd._fullLayout) return;
  gd.__lxBridge = true;
  let pointer = { x: 0, y: 0 }, down = null, timer = null;
  gd.addEventListener('pointermove', (e) => { pointer = { x: e.clientX, y: e.clientY }; }, true);
  gd.on('plotly_hover', (event) => {
    const point = event && event.points && event.points[0];
    const id = rowId(point);
    if (id === null) { hideImage(); return; }
    const e = event.event;
    STATE.hovered = id;
    showImage(gd, id, e && e.clientX !== undefined ? e.clientX : pointer.x, e && e.clientY !== undefined ? e.clientY : pointer.y);
  });
  gd.on('plotly_unhover', hideImage);
  gd.addEventListener('mouseleave', hideImage);
  gd.addEventListener('pointerdown', (e) => { down = { x: e.clientX, y: e.clientY, button: e.button }; hideImage(); }, true);
  gd.addEventListener('pointerup', (e) => {
    const start = down; down = null;
    if (!start || start.button !== 0 || !gd._fullLayout.scene) return;
    if (Math.hypot(e.clientX - start.x, e.clientY - start.y) > 5) return;  // a drag: the scene rotated
    const canvas = gd._fullLayout.scene._scene && gd._fullLayout.scene._scene.glplot.canvas;
    if (!canvas || !canvas.contains(e.target) && e.target !== canvas) return;  // the legend or the tool bar
    const hit = nearest3d(gd, e.clientX, e.clientY, STATE.radius);
    if (hit && hit.id !== null && STATE.report) STATE.report('clicked', hit.id);
  }, true);
  const changed = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const view = currentView(gd);
      const text = JSON.stringify(view);
      if (text !== gd.__lxView && STATE.report) { gd.__lxView = text; STATE.report('view', text); }
    }, 350);
  };
  gd.on('plotly_relayout', changed);
  gd.on('plotly_restyle', changed);
  const redraw = () => drawMarks(gd);
  gd.on('plotly_afterplot', redraw);
  gd.on('plotly_relayouting', redraw);
  gd.on('plotly_relayout', redraw);
  gd.__lxView = JSON.stringify(currentView(gd));  // what the page drew first is not a change
  drawMarks(gd);
}

// rings drawn over the map around marked points (a focused image, a "go to" result): HTML on top of the
// plot, moved with every zoom, pan or rotation, so marking a point never re-sends the map
function ensureStyle() {
  if (document.getElementById('lx-map-style')) return;
  const style = document.createElement('style');
  style.id = 'lx-map-style';
  style.textContent = `
    .lx-mark { position: absolute; pointer-events: none; border-radius: 50%; z-index: 20;
      transform: translate(-50%, -50%); box-sizing: border-box; }
    .lx-mark.focus { width: 30px; height: 30px; border: 3px solid #ff2b8a; box-shadow: 0 0 0 2px white;
      animation: lx-pulse 1.6s ease-out 2; }
    .lx-mark.pick { width: 20px; height: 20px; border: 2px solid #111; box-shadow: 0 0 0 2px white; }
    @keyframes lx-pulse { 0% { width: 90px; height: 90px; opacity: 0.2; } 60% { width: 30px; height: 30px; opacity: 1; } }`;
  document.head.appendChild(style);
}

function pointPosition(gd, id) {
  // where row ``id`` is drawn, in pixels from the chart's top-left corner; null when it is not in view
  const fl = gd._fullLayout;
  const outer = gd.getBoundingClientRect();
  if (fl.scene) {
    const plot = fl.scene._scene && fl.scene._scene.glplot;
    if (!plot || !plot.cameraParams) return null;
    const { view, projection, model } = plot.cameraParams;
    const m = mul(projection, mul(view, model));
    const rect = plot.canvas.getBoundingClientRect();
    for (const obj of plot.objects) {
      const trace = obj._trace && obj._trace.data;
      if (!trace || !trace.customdata || trace.visible === 'legendonly') continue;
      const i = Array.prototype.indexOf.call(trace.customdata, id);
      if (i < 0 || !obj.points || !obj.points[i]) continue;
      const [x, y, z] = obj.points[i];
      const w = m[3] * x + m[7] * y + m[11] * z + m[15];
      if (!(w > 0)) return null;
      return { left: rect.left - outer.left + ((m[0] * x + m[4] * y + m[8] * z + m[12]) / w + 1) / 2 * rect.width,
               top: rect.top - outer.top + (1 - (m[1] * x + m[5] * y + m[9] * z + m[13]) / w) / 2 * rect.height };
    }
    return null;
  }
  if (!fl.xaxis || !fl.yaxis) return null;
  for (const trace of gd._fullData || []) {
    if (!trace.customdata || trace.visible !== true) continue;
    const i = Array.prototype.indexOf.call(trace.customdata, id);
    if (i < 0) continue;
    const left = fl.xaxis._offset + fl.xaxis.l2p(trace.x[i]), top = fl.yaxis._offset + fl.yaxis.l2p(trace.y[i]);
    const inside = left >= fl.xaxis._offset && left <= fl.xaxis._offset + fl.xaxis._length &&
      top >= fl.yaxis._offset && top <= fl.yaxis._offset + fl.yaxis._length;
    return inside ? { left, top } : null;
  }
  return null;
}

function drawMarks(gd) {
  const marks = (STATE.marks || {})[gd.layout && gd.layout.meta && gd.layout.meta.lx] || [];
  const old = gd.querySelectorAll(':scope > .lx-mark');
  if (!marks.length && !old.length) return;
  ensureStyle();
  if (getComputedStyle(gd).position === 'static') gd.style.position = 'relative';
  const keep = new Set();
  for (const mark of marks) {
    const name = `lx-mark-${mark.style}-${mark.id}`;
    let el = gd.querySelector(`:scope > .${name}`);
    const at = pointPosition(gd, mark.id);
    if (!at) { if (el) el.remove(); continue; }
    if (!el) { el = document.createElement('div'); el.className = `lx-mark ${mark.style} ${name}`; gd.appendChild(el); }
    el.style.left = at.left + 'px'; el.style.top = at.top + 'px';
    keep.add(el);
  }
  old.forEach((el) => { if (!keep.has(el)) el.remove(); });
}

export default function (component) {
  const { data, setTriggerValue } = component;
  STATE.report = setTriggerValue;
  STATE.radius = data.radius;
  STATE.marks = data.marks || {};
  // charts come and go with reruns: attach to new ones; rings follow 3-D rotations, which Plotly does not report
  const charts = () => document.querySelectorAll('.js-plotly-plot');
  const scan = () => charts().forEach((gd) => { attach(gd); if (gd._fullLayout && gd._fullLayout.scene) drawMarks(gd); });
  scan();
  charts().forEach(drawMarks);
  const timer = setInterval(scan, 150);
  return () => clearInterval(timer);
}
"""
)

# The sprite sheets of the page's maps, named by the images they hold: every sheet fetched and decoded ahead of the
# first hover, one at a time and only when the page is idle, so they never compete with drawing the map (a hover
# before then fetches its own sheet at once).
_SPRITES_JS = (
    _COMMON_JS
    + """
export default function (component) {
  const { data } = component;
  for (const set of data.sets) STATE.sets[set.key] = set;
  const pending = data.sets.flatMap((set) => set.urls.map((_, i) => [set, i]));
  const next = () => {
    const item = pending.shift();
    if (!item) return;
    const img = sheet(item[0], item[1]);
    const go = () => requestIdleCallback(next, { timeout: 2000 });
    if (img.complete) go(); else { img.addEventListener('load', go, { once: true }); img.addEventListener('error', go, { once: true }); }
  };
  requestIdleCallback(next, { timeout: 2000 });
}
"""
)

_bridge = st.components.v2.component("explorer.map_bridge", js=_JS)
_sprites = st.components.v2.component("explorer.sprites", js=_SPRITES_JS)


@dataclass(frozen=True)
class View:
    """What a person did to a map's view: a 2-D zoom (x0, x1, y0, y1), a 3-D camera (eye, centre, up), and the
    names of the classes hidden with the legend."""

    range: tuple[float, float, float, float] | None = None
    camera: tuple[float, ...] | None = None
    hidden: tuple[str, ...] = ()


def parse_view(text: Any) -> View | None:
    """The page's report (JSON text) -> a View; None for anything else (it comes from a browser)."""
    try:
        raw = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None

    def numbers(value: Any, n: int) -> tuple[float, ...] | None:
        if not isinstance(value, list) or len(value) != n:
            return None
        try:
            out = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            return None
        return out if all(abs(v) < 1e9 for v in out) else None

    hidden = raw.get("hidden")
    names = tuple(str(h)[:80] for h in hidden[:1000]) if isinstance(hidden, list) else ()
    rng = numbers(raw.get("range"), 4)
    return View(rng if rng is None else (rng[0], rng[1], rng[2], rng[3]), numbers(raw.get("camera"), 9), names)


def sprite_urls(sheets: SpriteSheets, tag: str) -> list[str] | None:
    """Serve the sheets as this session's media files; their URLs, or None where no server runs (tests)."""
    try:
        from streamlit.runtime import get_instance

        manager = get_instance().media_file_mgr
        base = (st.get_option("server.baseUrlPath") or "").strip("/")
        urls = [manager.add(sheet, "image/png", f"lx-sprite:{tag}:{i}") for i, sheet in enumerate(sheets.sheets)]
    except Exception as exc:  # no runtime (AppTest), or a Streamlit without this internal API: no hover images
        log.debug("hover images off: %r", exc)
        return None
    return [f"/{base}{u}" if base and u.startswith("/") else u for u in urls]


def sprite_set(key: str, sheets: SpriteSheets, n: int) -> dict | None:
    """The page's description of one set of sheets, named ``key`` (the ``layout.meta.lx`` of its maps)."""
    urls = sprite_urls(sheets, key[:16])
    if urls is None:
        return None
    return {
        "key": key, "urls": urls, "n": int(n), "per": sheets.per_sheet, "cols": sheets.cols,
        "h": sheets.cell_h, "w": sheets.cell_w, "target": HOVER_PX,
    }  # fmt: skip


def serve_sprites(*, key: str, sets: list[dict]) -> None:
    """Hand the page the sprite sheets of its maps (``sprite_set`` results). Called at the end of a whole run,
    outside any fragment: Streamlit keeps a session's media files until its next whole run, and the sheets are
    made (the first time) after the map and the model, so they never delay the map."""
    if sets:
        _sprites(data={"sets": sets}, key=key)


def map_bridge(
    *,
    key: str,
    on_click: Callable[[int], Any] | None = None,
    on_view: Callable[[View], Any] | None = None,
    marks: dict[str, list[dict]] | None = None,
) -> None:
    """Mount the page-side script for the page's maps: ``on_click(row id)`` for a click on a 3-D map and ``on_view(View)`` after a zoom, pan, rotation or legend filter, both called
    before the rerun they cause. ``marks``: {sprite set key: [{"id": row id, "style": "focus" | "pick"}]}, rings
    drawn in the page around those points of that set's maps."""

    def clicked() -> None:
        value = _value(key, "clicked")
        if value is not None and on_click is not None:
            try:
                on_click(int(value))
            except (TypeError, ValueError):
                pass

    def viewed() -> None:
        view = parse_view(_value(key, "view"))
        if view is not None and on_view is not None:
            on_view(view)

    _bridge(
        data={"radius": CLICK_RADIUS_PX, "marks": marks or {}},
        key=key,
        on_clicked_change=clicked,
        on_view_change=viewed,
    )


def _value(key: str, name: str) -> Any:
    state = st.session_state.get(key)
    return state.get(name) if isinstance(state, dict) else getattr(state, name, None)
