"""The Features pages in a real browser: a linked feature page (/features?feature=N) opens once the
sparse autoencoder is chosen in the sidebar, shows its atom and top images, and the atlas opens a
feature by a click, putting it in the address. Takes tests/e2e/artifacts/features.png."""

from pathlib import Path

import pytest
from browsing import choose_checkpoint

pytestmark = pytest.mark.e2e

SAE = "fashion-mnist-sae-topk1024"


def _by_frequency() -> list[int]:
    """The shipped SAE's features, most frequent first, on the images the page maps by default (10,000 of
    the Fashion-MNIST test split)."""
    from explorer.data import load_dataset
    from explorer.maps.pipeline import CHECKPOINT_DIR, DiskCache, cached_map, data_digest, sha256, subset_for
    from explorer.maps.projection import ProjectionParams
    from explorer.quality import features

    ds = subset_for(load_dataset("fashion-mnist", "test"), 10000, (1, 28, 28))
    digest = sha256((CHECKPOINT_DIR / f"{SAE}.safetensors").read_bytes())
    md = cached_map(digest, data_digest(ds.images, ds.labels), ProjectionParams(), DiskCache(Path("/nonexistent")))
    assert md is not None, "the shipped SAE's default map bundle is missing"
    return features.feature_stats(md.encoded.latents).order().tolist()


def _screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its own container, so a full-page shot of the window misses
    the bottom; a tall window for the moment of the picture shows all of it."""
    size = page.viewport_size
    height = page.evaluate("() => document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, 4000))})
    page.wait_for_timeout(800)  # charts redraw at the new size
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


def test_linked_feature_page_shows_atom_and_top_images(server, page, screenshots):
    order = _by_frequency()
    feature = order[39]  # ranked 40th: it has top images, bands, a footprint
    page.goto(f"{server}/features?feature={feature}")
    # the default checkpoint is a VAE: the page explains itself and keeps the feature in the address
    page.get_by_text("Feature pages are for sparse autoencoders", exact=False).wait_for(timeout=120_000)
    choose_checkpoint(page, SAE)
    page.get_by_role("heading", name=f"Feature {feature}").wait_for(timeout=120_000)
    page.get_by_text("Top activating images").wait_for(timeout=60_000)
    page.get_by_text("decoder atom", exact=False).first.wait_for(timeout=60_000)
    page.get_by_text("Steering", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.js-plotly-plot')].some(g => g.data && g.data.length >= 2)",
        timeout=60_000,
    )
    images = page.locator("[data-testid='stImage'] img")
    assert images.count() >= 6  # atom, top images, strongest, similar atoms, bands, steering
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stImage] img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=60_000,
    )
    assert images.first.evaluate("img => img.naturalWidth") >= 150  # the atom, upscaled
    assert page.locator("[data-testid='stException']").count() == 0
    assert f"feature={feature}" in page.url
    _screenshot(page, screenshots / "features.png")

    # back to the atlas, then a feature's button opens its page and names it in the address
    page.get_by_role("button", name="← All features").click()
    page.get_by_text("Feature atlas").wait_for(timeout=60_000)
    page.wait_for_function("() => !new URLSearchParams(location.search).has('feature')", timeout=10_000)
    page.get_by_text("Map of the features", exact=True).wait_for(timeout=60_000)
    page.wait_for_function(  # the map of features is laid out on first use (a few seconds)
        "() => [...document.querySelectorAll('.js-plotly-plot')]"
        ".some(g => g.data && g.data.some(t => (t.name || '').startsWith('live')))",
        timeout=120_000,
    )
    page.wait_for_function("() => !document.querySelector('[data-stale=true]')", timeout=60_000)
    _screenshot(page, screenshots / "features-atlas.png")
    opened = order[1]  # the second tile of the first page (sorted by frequency)
    page.get_by_role("button", name=str(opened), exact=True).click()
    page.get_by_role("heading", name=f"Feature {opened}").wait_for(timeout=60_000)
    # the address changes in place (history API), without a navigation to wait for
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('feature') === '{opened}'", timeout=10_000)
