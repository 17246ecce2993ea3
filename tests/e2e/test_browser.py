"""The real thing: streamlit server + Chromium. Box selection decodes images; a box over empty
space decodes that spot; interpolation draws its path on the map. Takes the README's pictures
(into tests/e2e/artifacts; scripts/screenshots.sh copies them to docs/)."""

import pytest
from browsing import drag, plot_area, point_on_screen, trace_names, wait_for_map

pytestmark = pytest.mark.e2e


def test_box_selection_decodes_and_spot_decodes(server, page, screenshots):
    page.goto(server)
    wait_for_map(page)
    names = trace_names(page)
    assert "T-shirt/top" in names and "Ankle boot" in names, names

    area = plot_area(page)
    # a box over the middle third of the map selects a few hundred images
    drag(page, area["x"] + area["width"] * 0.3, area["y"] + area["height"] * 0.3,
         area["x"] + area["width"] * 0.7, area["y"] + area["height"] * 0.7)  # fmt: skip
    page.get_by_text("selected", exact=False).first.wait_for(timeout=60_000)
    assert page.get_by_text("original | reconstruction", exact=False).count() >= 1
    thumbs = page.locator(".lx-thumb img")  # the clickable grid (explorer/ui/bridge.py)
    thumbs.first.wait_for(timeout=30_000)
    assert thumbs.count() >= 2
    assert thumbs.first.evaluate("img => img.naturalWidth") >= 56  # an original and its reconstruction, scaled
    page.screenshot(path=str(screenshots / "screenshot.png"))
    # a click on a thumbnail opens that image with its nearest images in latent space
    first = page.locator(".lx-thumb span").first.inner_text().split(" ")[0]  # "#123"
    page.locator(".lx-thumb").first.click()
    page.get_by_text(f"{first} (", exact=False).first.wait_for(timeout=60_000)
    page.get_by_text("its nearest images in latent space", exact=False).first.wait_for(timeout=60_000)

    # a tiny box in the empty top-left corner of the map: no points, but a spot to decode
    x, y = area["x"] + 6, area["y"] + 6
    drag(page, x, y, x + 8, y + 8)
    page.get_by_text("Decoded at", exact=False).first.wait_for(timeout=60_000)
    assert page.get_by_text("typical spacing", exact=False).count() >= 1
    # the chart keeps the box drawn, so the figure is not re-sent with a marker
    assert "decoded spot" not in trace_names(page)
    page.screenshot(path=str(screenshots / "spot.png"))


def test_typed_coordinate_decodes(server, page):
    page.goto(server)
    wait_for_map(page)
    field = page.get_by_label("Decode at a map coordinate")
    field.fill("0, 0")
    field.press("Enter")
    page.get_by_text("Decoded at (0.00, 0.00)", exact=False).first.wait_for(timeout=60_000)


def test_interpolation_path_is_drawn_on_the_map(server, page, screenshots):
    page.goto(server + "/interpolate")
    wait_for_map(page)
    page.get_by_text("Interpolate", exact=True).first.wait_for()
    page.wait_for_function(
        "() => document.querySelector('.js-plotly-plot').data.some(t => t.name === 'interpolation')", timeout=60_000
    )
    path = page.evaluate(
        "() => document.querySelector('.js-plotly-plot')._fullData.find(t => t.name === 'interpolation')._length"
    )
    assert path == 16
    assert page.get_by_role("button", name="Animated GIF").count() == 1
    page.screenshot(path=str(screenshots / "interpolate.png"))


@pytest.mark.parametrize("view", ["sample", "traverse"])
def test_other_views_render_with_overlays(server, page, view):
    page.goto(f"{server}/{view}")
    wait_for_map(page)
    page.wait_for_function("() => document.querySelector('.js-plotly-plot').data.length >= 11", timeout=60_000)
    assert page.locator("[data-testid='stImage'] img").count() >= 1
    assert page.locator("[data-testid='stException']").count() == 0


class _Touch:
    """Unpickling this creates a file: the marker that must never appear."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _upload(page, server, *paths, commit=True):
    """Drop model file(s) on the Your model page; with ``commit``, review the preview and use the model."""
    page.goto(server + "/upload")
    page.get_by_text("Model file(s)").first.wait_for(timeout=60_000)
    page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files([str(p) for p in paths])
    if commit:
        button = page.get_by_role("button", name="Use this model")
        button.wait_for(timeout=180_000)
        assert page.get_by_text("bottom: this model's reconstructions", exact=False).count() == 1
        button.click()


def _map_and_select(page):
    """After an upload: the new model's map is computed, then a box selection decodes with it."""
    wait_for_map(page, timeout=180_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stProgress\"]')", timeout=180_000)
    area = plot_area(page)
    drag(page, area["x"] + area["width"] * 0.2, area["y"] + area["height"] * 0.2,
         area["x"] + area["width"] * 0.8, area["y"] + area["height"] * 0.8)  # fmt: skip
    page.get_by_text("selected", exact=False).first.wait_for(timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0


def test_upload_maps_and_decodes_a_new_checkpoint(server, page, tmp_path):
    from explorer import models
    from explorer.checkpoint import checkpoint_bytes

    model = models.build(models.config_class("ae")(hidden=(64,), latent_dim=8))
    path = tmp_path / "my-model.safetensors"
    path.write_bytes(checkpoint_bytes(model, dataset={"name": "fashion-mnist"}))
    _upload(page, server, path)
    page.get_by_text("Loaded ⬆ my-model.safetensors", exact=False).wait_for(timeout=60_000)
    page.get_by_text("latent 8", exact=False).first.wait_for(timeout=180_000)
    _map_and_select(page)


def test_hostile_upload_is_refused_in_the_browser(server, page, tmp_path):
    import pickle

    path = tmp_path / "weights.safetensors"
    path.write_bytes(pickle.dumps(_Touch(tmp_path / "pwned")))
    _upload(page, server, path, commit=False)
    page.get_by_text("Refused:", exact=False).first.wait_for(timeout=60_000)
    assert page.get_by_text("never unpickled", exact=False).count() >= 1
    assert not (tmp_path / "pwned").exists()
    page.goto(server)
    wait_for_map(page)  # still up, default map still there


def test_onnx_pair_uploads_maps_and_decodes(server, page, tmp_path, screenshots):
    """A 64x64 colour conv autoencoder exported by torch.onnx.export: encoder + decoder files, the preview,
    then the map of resized Fashion-MNIST and a box selection decoded by onnxruntime."""
    import onnx_models as om

    exported = om.rgb64(tmp_path)
    _upload(page, server, exported.encoder_file, exported.decoder_file, commit=False)
    button = page.get_by_role("button", name="Use this model")
    button.wait_for(timeout=180_000)
    assert page.get_by_text("input 3x64x64", exact=False).count() >= 1
    page.screenshot(path=str(screenshots / "upload.png"), full_page=True)
    button.click()
    page.get_by_text("Loaded ⬆", exact=False).first.wait_for(timeout=60_000)
    page.get_by_text("ONNX", exact=False).first.wait_for(timeout=60_000)
    _map_and_select(page)


def _click_select_a_point(page, server) -> None:
    """Open the map, switch the mouse to "click selects" and click one point: its image is shown."""
    page.goto(server)
    wait_for_map(page)
    page.get_by_role("radio", name="Click", exact=True).click()  # the mouse: click selects
    page.get_by_text("Click a point to select it", exact=False).wait_for(timeout=60_000)
    wait_for_map(page)
    point = point_on_screen(page)
    page.mouse.move(point["x"], point["y"])
    page.mouse.click(point["x"], point["y"])
    page.get_by_text(f"#{point['id']} (", exact=False).first.wait_for(timeout=60_000)


def _double_click_clears(page) -> None:
    """Double-click the map's corner; the selection is gone (the panel's hint is back)."""
    area = plot_area(page)
    cleared = page.get_by_text("Click a point or draw a box", exact=False)
    for _ in range(3):  # on a busy machine two clicks can arrive too far apart to count as a double-click
        page.mouse.dblclick(area["x"] + 5, area["y"] + 5)
        try:
            cleared.wait_for(timeout=20_000)
            break
        except Exception:  # noqa: BLE001
            continue
    cleared.wait_for(timeout=1_000)


def test_click_selects_a_point_adds_and_clears(server, page):
    _click_select_a_point(page, server)
    page.get_by_text("its nearest images in latent space").wait_for(timeout=60_000)
    page.get_by_text("Add to selection").click()
    page.wait_for_timeout(1500)  # let the toggle's rerun finish before the next click
    other = point_on_screen(page, trace=1, i=3)
    page.mouse.move(other["x"], other["y"])
    page.mouse.click(other["x"], other["y"])
    page.get_by_text("2 selected", exact=False).first.wait_for(timeout=60_000)
    page.get_by_role("button", name="Clear selection").click()
    page.get_by_text("Click a point or draw a box", exact=False).wait_for(timeout=60_000)


def test_double_click_clears_in_click_mode(server, page):
    _click_select_a_point(page, server)
    page.wait_for_timeout(1000)  # the selection's rerun settles before the double-click
    _double_click_clears(page)


def test_zoom_survives_a_selection_and_double_click_clears(server, page):
    page.goto(server)
    wait_for_map(page)
    page.evaluate(
        "() => Plotly.relayout(document.querySelector('.js-plotly-plot'), {'xaxis.range': [-4, 4], 'yaxis.range': [-7, 1]})"
    )
    area = plot_area(page)
    drag(page, area["x"] + area["width"] * 0.3, area["y"] + area["height"] * 0.3,
         area["x"] + area["width"] * 0.7, area["y"] + area["height"] * 0.7)  # fmt: skip
    page.get_by_text("selected —", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)  # any redraw of the chart would have reset the axes by now
    rng = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.xaxis.range")
    assert abs(rng[0] + 4) < 1e-6 and abs(rng[1] - 4) < 1e-6, rng
    _double_click_clears(page)
