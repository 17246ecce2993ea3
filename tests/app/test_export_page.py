"""The Export page through the real page script: the default map, its download buttons, none of them run
until clicked; with a selection, the selection picture too. What the files hold: tests/unit/test_exports.py."""

from apptests import page_app
from streamlit.testing.v1 import AppTest

from explorer.maps.selection import Picked
from explorer.ui import map_view


def export_app() -> AppTest:
    return page_app("export", "export_view")


def download_labels(at: AppTest) -> list[str]:
    return [button.proto.label for button in at.get("download_button")]


def test_export_page_offers_every_file():
    at = export_app().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 1, "the map is drawn beside the buttons"
    labels = download_labels(at)
    for wanted in ("Map (HTML)", "Table (CSV)", "Table (Parquet)", "Embedding Projector files (zip)"):
        assert wanted in labels, labels
    assert any(label.startswith("Decoded mosaic") for label in labels), labels
    assert not any(label.startswith("Selection") for label in labels), "no selection yet: no selection picture"
    # every file is made on click: the buttons carry a deferred file, not the bytes
    assert all(button.proto.deferred_file_id for button in at.get("download_button"))


def test_a_selection_adds_its_picture():
    at = export_app().run()
    at.session_state[map_view.PICK] = Picked((3, 1, 2))
    at.run()
    assert not at.exception, at.exception
    assert "Selection: 3 images (PNG)" in download_labels(at)


def test_a_3d_map_explains_the_missing_mosaic():
    at = export_app()
    at.session_state["proj"] = "UMAP 3-D"
    at.session_state["n"] = 1000
    at.run(timeout=300)
    assert not at.exception, at.exception
    assert not any(label.startswith("Decoded mosaic") for label in download_labels(at))
    assert any("2-D map" in c.value for c in at.caption)
