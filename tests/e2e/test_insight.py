"""The "Your image" page in a real browser: pick an image by index, add noise, and see the reconstruction
and where the noisy image lands on the map. Takes tests/e2e/artifacts/your_image.png."""

import pytest
from browsing import MAP, trace_names

pytestmark = pytest.mark.e2e


def test_your_image_edits_reconstructs_and_shows_the_map_position(server, page, screenshots):
    page.goto(server + "/image")
    page.wait_for_selector(f"{MAP} .nsewdrag", timeout=120_000)
    page.wait_for_function(
        "() => (document.querySelector('.js-plotly-plot').data || []).some(t => t.name === 'your image')",
        timeout=120_000,
    )

    index = page.get_by_role("spinbutton", name="Image index")
    index.fill("42")
    index.press("Enter")
    page.get_by_text("#42 (", exact=False).first.wait_for(timeout=60_000)

    page.locator("[data-testid='stSelectbox']").filter(has_text="Noise").first.click()
    page.get_by_role("option", name="gaussian").click()
    page.get_by_text("gaussian noise 0.30", exact=False).first.wait_for(timeout=60_000)

    # the three tiles (original, edited, reconstruction), each a real decoded picture
    for caption in ("original", "edited", "reconstruction"):
        page.get_by_text(caption, exact=True).first.wait_for(timeout=30_000)
    # three tiles and the nearest images, each a decoded picture (loading may trail the text by a moment)
    page.wait_for_function(
        """() => { const imgs = [...document.querySelectorAll("[data-testid='stImage'] img")];
        return imgs.length >= 4 && imgs.slice(0, 3).every(i => i.complete && i.naturalWidth > 50); }""",
        timeout=30_000,
    )

    # the noisy image's position, and the path from where the clean image sits
    page.wait_for_function(
        "() => document.querySelector('.js-plotly-plot').data.some(t => t.name === 'edit')", timeout=60_000
    )
    names = trace_names(page)
    assert names[-2:] == ["edit", "your image"], names
    star = page.evaluate(
        "() => { const t = document.querySelector('.js-plotly-plot')._fullData.find(t => t.name === 'your image');"
        " return [t._length, t.marker.symbol]; }"
    )
    assert star == [1, "star"]
    assert page.locator("[data-testid='stException']").count() == 0
    assert page.get_by_text("PSNR vs original").count() == 1
    page.evaluate("() => document.activeElement && document.activeElement.blur()")  # no focus ring in the picture
    page.wait_for_timeout(500)  # let the map finish redrawing the overlays before the picture
    page.screenshot(path=str(screenshots / "your_image.png"))


@pytest.mark.parametrize(
    "path, shows",
    [
        ("/denoise", "PSNR"),
        ("/anomalies", "AUROC"),
        ("/compression", "numbers per code"),
        ("/metrics", "Metrics of"),
        ("/export", "Embedding Projector"),
    ],
)
def test_each_understanding_page_draws_in_the_browser(server, page, path, shows):
    """Every page of the Understand and Yours menus on the default checkpoint: its figures and images
    load, and no exception appears (the features, your-image and compare pages have tests of their own)."""
    page.goto(server + path)
    page.get_by_text(shows, exact=False).first.wait_for(timeout=240_000)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stApp\"]')?.dataset.testScriptState === 'notRunning'",
        timeout=240_000,
    )
    page.locator("[data-testid='stImage'] img, .js-plotly-plot").first.wait_for(timeout=60_000)
    assert page.locator("[data-testid='stException']").count() == 0
