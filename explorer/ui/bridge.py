"""Small browser-side pieces that Streamlit's own elements lack: a grid of thumbnails that can be
clicked, a place that scrolls itself into view, and a button that copies the address of the view.

They are ``st.components.v2`` components: a few lines of script in the page itself (no iframe, no
build step) that report a click back to Python as a trigger value. The thumbnails travel inline as
data URIs, so a new selection's grid shows without a second request for an image file. What the maps
do in the page (hover images, 3-D clicks, rings, views) is ``explorer.ui.map_bridge``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from explorer.figures import images

_THUMBS_CSS = """
.lx-thumbs { display: grid; gap: 6px; width: 100%; }
.lx-thumb { display: flex; flex-direction: column; align-items: center; gap: 2px; padding: 3px;
  border: 2px solid transparent; border-radius: 6px; background: none; cursor: pointer; font: inherit; }
.lx-thumb:hover { border-color: var(--st-primary-color, #ff4b4b); }
.lx-thumb.lx-focus { border-color: var(--st-primary-color, #ff4b4b); background: rgba(255, 75, 75, 0.06); }
.lx-thumb img { width: 100%; image-rendering: pixelated; }
.lx-thumb span { font-size: 0.75rem; color: var(--st-text-color, #31333f); opacity: 0.8; max-width: 100%;
  font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
"""
_THUMBS_JS = """
export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  let root = parentElement.querySelector('.lx-thumbs');
  if (!root) {
    root = document.createElement('div');
    root.className = 'lx-thumbs';
    parentElement.appendChild(root);
  }
  root.style.gridTemplateColumns = `repeat(${data.cols}, minmax(0, 1fr))`;
  root.replaceChildren(...data.cells.map((cell) => {
    const button = document.createElement('button');
    button.className = 'lx-thumb' + (cell.id === data.focus ? ' lx-focus' : '');
    button.title = cell.title;
    const img = document.createElement('img');
    img.src = cell.src;
    img.alt = cell.title;
    const caption = document.createElement('span');
    caption.textContent = cell.caption;
    button.append(img, caption);
    button.onclick = () => setTriggerValue('clicked', cell.id);
    return button;
  }));
}
"""
# Copies the address as it is when clicked (a selection made a moment ago included). Browsers allow the
# clipboard on https and localhost only; elsewhere the link is shown selected, ready for Ctrl+C.
_COPY_HTML = (
    '<button class="lx-copy" type="button">Copy link to this view</button><input class="lx-link" readonly hidden>'
)
_COPY_CSS = """
.lx-copy { width: 100%; padding: 0.4rem 0.75rem; border-radius: 0.5rem; cursor: pointer; font: inherit;
  border: 1px solid rgba(49, 51, 63, 0.2); background: var(--st-background-color, white);
  color: var(--st-text-color, #31333f); }
.lx-copy:hover { border-color: var(--st-primary-color, #ff4b4b); color: var(--st-primary-color, #ff4b4b); }
.lx-link { width: 100%; margin-top: 0.3rem; font-size: 0.75rem; }
"""
_COPY_JS = """
export default function (component) {
  const { parentElement } = component;
  const button = parentElement.querySelector('.lx-copy');
  const field = parentElement.querySelector('.lx-link');
  button.onclick = async () => {
    const link = window.location.href;
    try {
      await navigator.clipboard.writeText(link);
      button.textContent = '✓ Link copied';
      field.hidden = true;
    } catch (err) {
      field.value = link;
      field.hidden = false;
      field.select();
      button.textContent = 'Copy the link below (Ctrl+C)';
    }
    setTimeout(() => { button.textContent = 'Copy link to this view'; }, 2500);
  };
}
"""

# Brings its place on the page into view once per key (a close-up that opened further down a scrolling panel).
_SCROLL_JS = """
export default function (component) {
  const { parentElement, data } = component;
  const seen = window.__lxScrolled || (window.__lxScrolled = new Set());
  if (seen.has(data.token)) return;
  seen.add(data.token);
  requestAnimationFrame(() => parentElement.scrollIntoView({ block: 'nearest', behavior: 'instant' }));
}
"""

_copy = st.components.v2.component("explorer.copy_link", html=_COPY_HTML, css=_COPY_CSS, js=_COPY_JS)
_thumbs = st.components.v2.component("explorer.thumbnails", css=_THUMBS_CSS, js=_THUMBS_JS, isolate_styles=False)
_scroll = st.components.v2.component("explorer.scroll_here", js=_SCROLL_JS)


def _data_uri(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(images.png_bytes(image, fast=True)).decode("ascii")


def _clicked(key: str) -> int | None:
    value = st.session_state.get(key)
    clicked = value.get("clicked") if isinstance(value, dict) else getattr(value, "clicked", None)
    return None if clicked is None else int(clicked)


def thumbnails(
    tiles: np.ndarray,
    ids: list[int],
    captions: list[str],
    titles: list[str],
    *,
    cols: int,
    key: str,
    on_click: Callable[[int], Any],
    focus: int | None = None,
) -> None:
    """A grid of uint8 images (N, H, W[, 3]), each a button: a click calls ``on_click(row id)`` before the rerun."""
    # sent at their own size and scaled to the grid's columns by the page (pixelated): scaled up here, they would
    # be several times the pixels to compress and send
    cells = [
        {"id": int(i), "src": _data_uri(tile), "caption": cap, "title": title}
        for i, tile, cap, title in zip(ids, tiles, captions, titles)
    ]

    def changed() -> None:
        if (clicked := _clicked(key)) is not None:
            on_click(clicked)

    _thumbs(data={"cols": int(cols), "cells": cells, "focus": focus}, key=key, on_clicked_change=changed)


def copy_link(*, key: str) -> None:
    """A button that copies the page's address: with the view in its query parameters, a link to this view."""
    _copy(key=key)


def scroll_here(*, key: str) -> None:
    """Scroll the page (or the panel that holds this place) so that what follows is in view: once per ``key``
    in this browser tab, so a rerun does not pull the view back."""
    _scroll(data={"token": key}, key=key)
