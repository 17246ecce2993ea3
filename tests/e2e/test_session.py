"""A researcher's session, step by step in Chromium: an uploaded Fashion-MNIST model followed by every page,
Back through the steps taken, links that keep zoom and legend filters, a selection that outlives a change of
checkpoint, close-ups in sight, and the images under the pointer."""

import json
import urllib.parse

import pytest
from browsing import (
    IDLE,
    REVISION,
    choose_checkpoint,
    drag,
    new_map_drawn,
    plot_area,
    point_on_screen,
    trace_names,
    wait_for_map,
)

pytestmark = pytest.mark.e2e

SELECTED = "[data-testid='stMarkdownContainer']:has-text('selected —')"


def _params(page) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))


def _settled(page) -> None:
    page.wait_for_function(IDLE, timeout=120_000)


def _go(page, link: str, section: str | None = None) -> None:
    """Open a page from the top bar, from its section's dropdown when it sits in one."""
    if section:
        page.get_by_test_id("stTopNavSection").filter(has_text=section).first.click()
        page.get_by_test_id("stTopNavDropdownLink").filter(has_text=link).first.click()
    else:
        page.get_by_test_id("stTopNavLink").filter(has_text=link).first.click()


def _box_around(page, trace=3, i=10, half=45):
    point = point_on_screen(page, trace=trace, i=i)
    drag(page, point["x"] - half, point["y"] - half, point["x"] + half, point["y"] + half)
    page.locator(SELECTED).first.wait_for(timeout=60_000)
    page.wait_for_function("() => new URLSearchParams(location.search).has('sel')", timeout=30_000)
    _settled(page)
    return page.locator(SELECTED).first.inner_text().split(" selected")[0]


# --- an uploaded model, on every page ---------------------------------------------------------------------


def _onnx_of_a_shipped_model(tmp_path):
    """The shipped Fashion-MNIST conv AE exported to ONNX, encoder and decoder, as torch.onnx.export writes them."""
    import onnx_models as om
    import torch

    from explorer.checkpoint import load_checkpoint
    from explorer.maps.pipeline import CHECKPOINT_DIR

    model = load_checkpoint(CHECKPOINT_DIR / "fashion-mnist-ae-conv32.safetensors").eval()
    encoder = om.export(om.Method(model, lambda m, x: m.encode(x)), torch.rand(2, 1, 28, 28), tmp_path / "enc.onnx")
    decoder = om.export(om.Method(model, lambda m, z: m.decode(z)), torch.rand(2, 32), tmp_path / "dec.onnx")
    return encoder, decoder


def test_an_uploaded_fashion_model_is_judged_on_fashion_mnist_and_every_page_shows_it(server, page, tmp_path):
    encoder, decoder = _onnx_of_a_shipped_model(tmp_path)
    page.goto(server + "/upload")
    page.get_by_text("Model file(s)").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files([str(encoder), str(decoder)])
    button = page.get_by_role("button", name="Use this model")
    button.wait_for(timeout=180_000)
    # nobody chose a dataset: the one it reconstructs best is named, with the runner-up's error
    report = page.locator("[data-testid='stCode']").filter(has_text="source:").first.inner_text()
    assert "dataset: fashion-mnist, inferred" in report and "next best" in report, report
    assert page.get_by_text("images of fashion-mnist:test", exact=False).count() >= 1  # the preview's images
    button.click()
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("AE (ONNX) · convolutional", exact=False).wait_for(timeout=180_000)
    wait_for_map(page, timeout=180_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stProgress\"]')", timeout=180_000)
    digest = _params(page).get("model")
    assert digest and len(digest) == 64, page.url
    sidebar.get_by_text("images of fashion-mnist:test", exact=False).wait_for(timeout=10_000)  # mapped on its data
    name = "⬆ enc.onnx + dec.onnx"
    _go(page, "Metrics", "Understand")
    page.get_by_role("heading", name=f"Metrics of {name}").wait_for(timeout=300_000)
    assert _params(page).get("model") == digest
    _go(page, "Compare", "Understand")
    page.get_by_text(f"Left: {name}", exact=False).wait_for(timeout=300_000)
    assert _params(page).get("model") == digest
    _go(page, "Sample")
    page.get_by_role("heading", name="Sample").wait_for(timeout=120_000)
    wait_for_map(page)
    sidebar.get_by_text("AE (ONNX) · convolutional", exact=False).wait_for(timeout=10_000)
    assert page.locator("[data-testid='stException']").count() == 0


# --- Back ---------------------------------------------------------------------------------------------------


def test_back_goes_back_one_step_at_a_time(server, page):
    page.goto(server)
    wait_for_map(page)
    _settled(page)
    start = page.evaluate("() => history.length")
    count = _box_around(page)  # step 1: a selection
    assert page.evaluate("() => history.length") == start + 1
    first = _params(page)["sel"]
    before = page.evaluate(REVISION)
    choose_checkpoint(page, "fashion-mnist-ae-conv32")  # step 2: a checkpoint
    new_map_drawn(page, before)
    assert page.evaluate("() => history.length") == start + 2
    _go(page, "Interpolate")  # step 3: a page
    page.get_by_role("heading", name="Interpolate").wait_for(timeout=60_000)
    wait_for_map(page)
    _settled(page)
    assert page.evaluate("() => history.length") == start + 3

    sidebar = page.locator("[data-testid='stSidebar']")
    page.go_back()  # to the map page, with the second checkpoint and the selection
    page.get_by_role("heading", name="Map & decode").wait_for(timeout=60_000)
    _settled(page)
    assert _params(page).get("ckpt") == "fashion-mnist-ae-conv32"
    assert "AE · conv · latent 32" in sidebar.inner_text()
    page.locator(SELECTED).first.wait_for(timeout=60_000)
    page.go_back()  # to the first checkpoint, the selection still made
    page.wait_for_function("() => !new URLSearchParams(location.search).has('ckpt')", timeout=60_000)
    sidebar.get_by_text("VAE · conv · latent 16", exact=False).wait_for(timeout=60_000)
    page.locator(SELECTED).first.wait_for(timeout=60_000)
    assert page.locator(SELECTED).first.inner_text().startswith(count)
    assert _params(page).get("sel") == first
    page.go_back()  # before the selection
    page.get_by_text("Click a point or draw a box", exact=False).wait_for(timeout=60_000)
    assert "sel" not in _params(page)
    assert page.locator("[data-testid='stException']").count() == 0


# --- the view in a link -------------------------------------------------------------------------------------


def test_a_link_restores_zoom_and_legend_filters(server, browser, page):
    page.goto(server)
    wait_for_map(page)
    _settled(page)
    page.evaluate(
        "() => Plotly.relayout(document.querySelector('.js-plotly-plot'), {'xaxis.range': [-3, 5], 'yaxis.range': [-6, 2]})"
    )
    page.locator(".legend .traces").filter(has_text="Trouser").first.click()  # hides that class
    page.wait_for_function(
        "() => { const p = new URLSearchParams(location.search); return p.has('view') && p.has('hide'); }",
        timeout=60_000,
    )
    link = page.url
    assert _params(page)["hide"] == "1"  # Trouser, by its class index
    fresh = browser.new_context(viewport={"width": 1500, "height": 950})
    try:
        other = fresh.new_page()
        other.goto(link)
        wait_for_map(other)
        view = other.evaluate(
            """() => { const g = document.querySelector('.js-plotly-plot');
            return {x: g._fullLayout.xaxis.range, y: g._fullLayout.yaxis.range,
                    hidden: g._fullData.filter(t => t.visible === 'legendonly' && t.customdata).map(t => t.name)}; }"""
        )
        assert [round(v, 3) for v in view["x"]] == [-3, 5] and [round(v, 3) for v in view["y"]] == [-6, 2], view
        assert view["hidden"] == ["Trouser"]
    finally:
        fresh.close()


# --- the same images, another checkpoint ----------------------------------------------------------------------


def test_the_selection_outlives_a_change_of_checkpoint_on_the_same_images(server, page):
    page.goto(server)
    wait_for_map(page)
    _settled(page)
    count = _box_around(page)
    before = page.evaluate(REVISION)
    choose_checkpoint(page, "fashion-mnist-dae-conv32")
    new_map_drawn(page, before)
    page.locator(SELECTED).first.wait_for(timeout=60_000)
    assert page.locator(SELECTED).first.inner_text().startswith(count)
    # the new map draws it as a selection: those points keep their look, the rest fade
    selected = page.evaluate(
        "() => document.querySelector('.js-plotly-plot')._fullData.reduce((n, t) => n + (t.selectedpoints || []).length, 0)"
    )
    assert str(selected) == count.replace(",", "")


# --- details in sight ------------------------------------------------------------------------------------------


def test_a_close_up_opens_in_view_and_is_ringed_on_the_map(server, page):
    page.goto(server)
    wait_for_map(page)
    _settled(page)
    area = plot_area(page)
    drag(page, area["x"] + area["width"] * 0.25, area["y"] + area["height"] * 0.55,
         area["x"] + area["width"] * 0.5, area["y"] + area["height"] * 0.8)  # fmt: skip
    page.locator(".lx-thumb").nth(27).wait_for(timeout=60_000)
    last = page.locator(".lx-thumb").nth(27)
    chosen = last.locator("span").inner_text().split(" ")[0]  # "#123"
    last.scroll_into_view_if_needed()
    last.click()
    heading = page.locator("[data-testid='stMarkdownContainer']").filter(has_text="reconstruction MSE").first
    heading.wait_for(timeout=60_000)
    assert heading.inner_text().startswith(f"{chosen} (")
    near = page.get_by_text("its nearest images in latent space").first
    page.wait_for_timeout(500)  # the panel scrolls on the next animation frame
    box = near.bounding_box()
    assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= 950, box
    ring = page.locator(".lx-mark.focus").first
    ring.wait_for(timeout=10_000)
    ring_box = ring.bounding_box()
    map_box = plot_area(page)
    assert ring_box and ring_box["width"] >= 20
    assert map_box["x"] <= ring_box["x"] + ring_box["width"] / 2 <= map_box["x"] + map_box["width"]
    # the neighbours' captions never run into each other
    spans = page.locator(".lx-thumb span").all()
    boxes = [s.bounding_box() for s in spans[-8:]]
    for a, b in zip(boxes, boxes[1:]):
        assert a["x"] + a["width"] <= b["x"] + 1 or a["y"] != b["y"], (a, b)


def test_go_to_rings_the_image_and_a_bad_query_does_not_linger(server, page):
    page.goto(server)
    wait_for_map(page)
    field = page.get_by_placeholder("Go to an index", exact=False)
    field.fill("banana")
    field.press("Enter")
    error = page.get_by_text("no image or class called 'banana'", exact=False)
    error.wait_for(timeout=60_000)
    field.fill("42")
    field.press("Enter")
    page.get_by_text("#42 (", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_function(IDLE, timeout=60_000)  # the run that answered 42 has ended (stale elements go then)
    error.first.wait_for(state="detached", timeout=30_000)  # gone with the next thing the person did
    ring = page.locator(".lx-mark.focus").first
    ring.wait_for(timeout=10_000)
    assert ring.bounding_box()["width"] >= 20  # visible in a dense cluster


def test_the_size_slider_says_how_many_images_a_small_split_has(server, page):
    page.goto(server + "/?ckpt=mnist-ae-mlp32")
    wait_for_map(page, timeout=180_000)
    slider = page.locator("[data-testid='stSidebar'] [data-testid='stSlider']").first
    slider.get_by_text("all 1,000").first.wait_for(timeout=60_000)
    assert "10,000" not in slider.inner_text()


# --- the map's look ------------------------------------------------------------------------------------------


def test_a_large_selection_on_another_page_is_shown_as_a_selection_not_a_blot(server, page):
    page.goto(server + "/interpolate")
    wait_for_map(page)
    field = page.get_by_placeholder("Go to an index", exact=False)
    field.fill("Trouser")  # a thousand images
    field.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('.js-plotly-plot')._fullData.some(t => (t.selectedpoints || []).length > 500)",
        timeout=60_000,
    )
    assert "selected" not in trace_names(page)  # no layer of rings over the path


def test_continuous_colours_keep_a_neutral_legend(server, page):
    page.goto(server + "/?color=reconstruction+error")
    wait_for_map(page)
    legend = page.evaluate(
        """() => document.querySelector('.js-plotly-plot')._fullData
             .filter(t => t.showlegend !== false).map(t => [t.name, t.marker.color])"""
    )
    assert len(legend) == 10 and all(colour == "#9a9a9a" for _, colour in legend), legend


def test_hovering_a_point_shows_its_image(server, page, screenshots):
    page.goto(server)
    wait_for_map(page)
    _settled(page)
    page.wait_for_function("() => window.__lxMap && Object.keys(window.__lxMap.sets).length > 0", timeout=60_000)
    # the point Plotly reports under the pointer (on a dense map, now and then a neighbour drawn over the target)
    page.evaluate(
        "() => { window.__hovered = null; document.querySelector('.js-plotly-plot')"
        ".on('plotly_hover', (e) => { window.__hovered = Number(e.points[0].customdata); }); }"
    )
    shown = []
    for trace, i in ((0, 5), (4, 30), (8, 200)):
        point = point_on_screen(page, trace=trace, i=i)
        page.mouse.move(point["x"] - 40, point["y"] - 40)
        page.evaluate("() => { window.__hovered = null; }")  # the wait below is for this hover, not the last one
        page.mouse.move(point["x"], point["y"])
        page.wait_for_function(
            "() => window.__hovered !== null && window.__lxMap.last && "
            "window.__lxMap.last.id === window.__hovered && window.__lxMap.last.paintedAt",
            timeout=10_000,
        )
        shown.append(page.evaluate("() => window.__hovered"))
        canvas = page.locator("canvas.lx-hover")
        assert canvas.is_visible()
        if len(shown) == 2:
            page.screenshot(path=str(screenshots / "hover.png"))
        # the pixels drawn are the image's own (not a blank cell): the canvas is not one flat colour
        flat = page.evaluate(
            """() => { const c = document.querySelector('canvas.lx-hover'); const d = c.getContext('2d')
            .getImageData(0, 0, c.width, c.height).data; for (let i = 4; i < d.length; i += 4) if (d[i] !== d[0]) return false;
            return true; }"""
        )
        assert not flat
    assert len(set(shown)) == 3


def test_the_exported_map_keeps_its_labels_hover_images_and_provenance(server, page, tmp_path):
    page.goto(server + "/export")
    wait_for_map(page)
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name="Map (HTML)").click()
    path = tmp_path / "map.html"
    info.value.save_as(path)
    html = path.read_text(encoding="utf-8")
    meta = html.split('name="explorer-provenance" content="', 1)[1].split('"', 1)[0]
    provenance = json.loads(meta.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert provenance["checkpoint"] == "fashion-mnist-vae-conv16" and len(provenance["checkpoint_sha256"]) == 64
    assert provenance["dataset"] == "fashion-mnist" and provenance["split"] == "test"
    saved = page.context.new_page()
    saved.goto(path.as_uri())
    saved.wait_for_selector(".js-plotly-plot .nsewdrag", timeout=60_000)
    # every y tick label lies inside the page
    lefts = saved.evaluate(
        "() => [...document.querySelectorAll('.ytick text')].map(t => t.getBoundingClientRect().left)"
    )
    assert lefts and min(lefts) >= 0, lefts
    point = point_on_screen(saved, trace=0, i=5)
    saved.mouse.move(point["x"] - 30, point["y"] - 30)
    saved.mouse.move(point["x"], point["y"])
    saved.wait_for_function(
        "() => [...document.querySelectorAll('canvas')].some(c => c.style.display === 'block' && c.width > 50)",
        timeout=10_000,
    )


def test_compare_titles_sit_above_the_maps_and_the_table_shows_every_row(server, page):
    page.goto(server + "/compare")
    title = page.get_by_text("Left: fashion-mnist-vae-conv16", exact=False)
    title.wait_for(timeout=240_000)
    page.wait_for_function(IDLE, timeout=300_000)
    chart = page.locator(".js-plotly-plot").first.bounding_box()
    assert title.bounding_box()["y"] + title.bounding_box()["height"] <= chart["y"] + 1  # not under the tool bar
    table = page.locator("[data-testid='stDataFrame']").first
    table.wait_for(timeout=60_000)
    # the table is as tall as its rows: nothing to scroll inside it
    rows = int(table.locator("[aria-rowcount]").first.get_attribute("aria-rowcount"))  # the header included
    height = table.bounding_box()["height"]
    assert rows >= 8 and height >= 35 * rows, (rows, height)
