"""Links that restore a view: the address after a few choices and a selection, opened in a fresh
browser (a new session that knows nothing else), shows the same checkpoint, selection and points."""

import pytest
from browsing import REVISION, choose_checkpoint, drag, new_map_drawn, point_on_screen, wait_for_map

pytestmark = pytest.mark.e2e

SUMMARY = "[data-testid='stMarkdownContainer']:has-text('selected —')"
THUMB_IDS = "() => [...document.querySelectorAll('.lx-thumb span')].map(s => s.textContent.split(' ')[0])"


def test_a_copied_link_restores_checkpoint_selection_and_points(server, browser, page):
    page.goto(server)
    wait_for_map(page)
    before = page.evaluate(REVISION)
    choose_checkpoint(page, "fashion-mnist-ae-conv32")
    new_map_drawn(page, before)  # the new checkpoint's own map, and the page done with its run
    point = point_on_screen(page, trace=2, i=10)  # a box around a real point selects something
    drag(page, point["x"] - 40, point["y"] - 40, point["x"] + 40, point["y"] + 40)
    page.locator(".lx-thumb").first.wait_for(timeout=60_000)
    page.wait_for_function("() => new URLSearchParams(location.search).has('sel')", timeout=30_000)
    summary = page.locator(SUMMARY).first.inner_text()
    shown = page.evaluate(THUMB_IDS)
    link = page.url
    assert "ckpt=fashion-mnist-ae-conv32" in link, link

    fresh = browser.new_context(viewport={"width": 1500, "height": 950})
    try:
        other = fresh.new_page()
        other.goto(link)
        wait_for_map(other)
        other.locator(".lx-thumb").first.wait_for(timeout=60_000)
        assert other.locator(SUMMARY).first.inner_text() == summary
        assert other.evaluate(THUMB_IDS) == shown
        assert "AE · conv · latent 32" in other.locator("[data-testid='stSidebar']").inner_text()  # its caption
        assert other.locator("[data-testid='stException']").count() == 0
    finally:
        fresh.close()


def test_a_malformed_link_is_explained_and_the_default_view_shown(server, page):
    page.goto(server + "/?n=lots&ckpt=..%2Fetc%2Fpasswd&sel=%40%40%40&md=7&spot=1,nan&steps=-3")
    wait_for_map(page)
    sidebar = page.locator("[data-testid='stSidebar']")
    for text in (
        "“n=lots” was ignored", "“md=7” was ignored", "“ckpt=../etc/passwd” was ignored", "“steps=-3” was ignored",
        "The link's selection was ignored", "“spot=1,nan” was ignored",
    ):  # fmt: skip
        page.get_by_text(text, exact=False).wait_for(timeout=30_000)
    assert page.locator("[data-testid='stException']").count() == 0
    assert "VAE · conv · latent 16" in sidebar.inner_text()


def test_sidebar_choices_follow_to_other_pages_and_back(server, page):
    page.goto(server)
    wait_for_map(page)
    choose_checkpoint(page, "fashion-mnist-ae-conv32")
    sidebar = page.locator("[data-testid='stSidebar']")
    sidebar.get_by_text("AE · conv · latent 32", exact=False).wait_for(timeout=120_000)
    page.get_by_role("link", name="Sample").click()
    page.get_by_role("heading", name="Sample").wait_for(timeout=60_000)
    wait_for_map(page)
    assert "AE · conv · latent 32" in sidebar.inner_text()
    assert "ckpt=fashion-mnist-ae-conv32" in page.url
    page.get_by_role("link", name="Map & decode").click()
    page.get_by_role("heading", name="Map & decode").wait_for(timeout=60_000)
    assert "AE · conv · latent 32" in sidebar.inner_text()
